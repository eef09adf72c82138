//! One recording on disk: `{dir}/{channel}/{session}/` holds `init-{g}.mp4`, `seg-{n}.m4s`
//! and `journal.tsv`, a line per finished segment appended after the segment's file is
//! complete, so a crash loses at most the segment being written.

use std::path::{Path, PathBuf};

/// `root/rel` when `rel` is a recording's relative path (`{channel}/{session}`: two plain
/// names, no `..`, no separators inside them, not absolute); `None` otherwise.
pub fn safe_dir(root: &Path, rel: &str) -> Option<PathBuf> {
    let mut parts = rel.split('/');
    let (Some(a), Some(b), None) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let plain = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    (plain(a) && plain(b)).then(|| root.join(a).join(b))
}

/// Deletes the recording at `root/rel`; returns the bytes freed (0 when it was not there).
pub fn remove(root: &Path, rel: &str) -> std::io::Result<u64> {
    let Some(dir) = safe_dir(root, rel) else {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("not a recording path: {rel:?}"),
        ));
    };
    let mut freed = 0;
    match std::fs::read_dir(&dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                freed += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(freed)
}
