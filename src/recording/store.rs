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

/// The journal's file name.
pub const JOURNAL: &str = "journal.tsv";
/// The VOD playlist [`RecordingFiles::write_local_playlist`] writes (for FFmpeg).
pub const LOCAL_PLAYLIST: &str = "vod.m3u8";

/// One finished segment as the journal has it.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalEntry {
    /// The live media sequence number (its file is `seg-{msn}.m4s`).
    pub msn: u64,
    /// Seconds.
    pub duration: f64,
    /// The init segment generation it needs (`init-{init}.mp4`).
    pub init: u32,
    /// A discontinuity (a returned publisher) comes before it.
    pub discontinuity: bool,
    /// Size of its file.
    pub bytes: u64,
    /// Unix ms of its first frame.
    pub started_ms: i64,
}

impl JournalEntry {
    fn line(&self) -> String {
        format!(
            "seg\t{}\t{:.6}\t{}\t{}\t{}\t{}\n",
            self.msn,
            self.duration,
            self.init,
            u8::from(self.discontinuity),
            self.bytes,
            self.started_ms
        )
    }

    fn parse(fields: &[&str]) -> Option<JournalEntry> {
        let [msn, duration, init, disc, bytes, started] = fields else {
            return None;
        };
        let duration: f64 = duration.parse().ok()?;
        (duration.is_finite() && duration >= 0.0).then_some(())?;
        Some(JournalEntry {
            msn: msn.parse().ok()?,
            duration,
            init: init.parse().ok()?,
            discontinuity: *disc == "1",
            bytes: bytes.parse().ok()?,
            started_ms: started.parse().ok()?,
        })
    }
}

/// File name of a segment.
pub fn segment_file(msn: u64) -> String {
    format!("seg-{msn}.m4s")
}

/// File name of an init segment.
pub fn init_file(generation: u32) -> String {
    format!("init-{generation}.mp4")
}

/// Writes one recording as its segments come (blocking file I/O: run it off the runtime).
pub struct Writer {
    dir: PathBuf,
    journal: std::fs::File,
    inits: Vec<u32>,
    bytes: u64,
}

impl Writer {
    /// Makes (or continues) the recording folder `root/{rel}`.
    pub fn create(root: &Path, rel: &str) -> std::io::Result<Writer> {
        let dir = safe_dir(root, rel).ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("not a recording path: {rel:?}"),
            )
        })?;
        std::fs::create_dir_all(&dir)?;
        let journal = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(JOURNAL))?;
        Ok(Writer {
            dir,
            journal,
            inits: Vec::new(),
            bytes: 0,
        })
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes written so far (segments and init segments).
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes init segment `generation` once.
    pub fn init(&mut self, generation: u32, bytes: &[u8]) -> std::io::Result<()> {
        if self.inits.contains(&generation) {
            return Ok(());
        }
        write_whole(&self.dir, &init_file(generation), bytes)?;
        self.bytes += bytes.len() as u64;
        self.inits.push(generation);
        Ok(())
    }

    /// Writes a finished segment, then its journal line: a segment is in the recording
    /// only once its file is whole.
    pub fn segment(&mut self, entry: &JournalEntry, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        write_whole(&self.dir, &segment_file(entry.msn), bytes)?;
        let entry = JournalEntry {
            bytes: bytes.len() as u64,
            ..entry.clone()
        };
        self.journal.write_all(entry.line().as_bytes())?;
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// The session ended at `ended_ms`.
    pub fn end(&mut self, ended_ms: i64) -> std::io::Result<()> {
        use std::io::Write;
        self.journal.write_all(format!("end\t{ended_ms}\n").as_bytes())
    }

    /// The catalog has the recording as row `id` (a restart need not look at it again).
    pub fn catalogued(dir: &Path, id: i64) -> std::io::Result<()> {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.join(JOURNAL))?
            .write_all(format!("row\t{id}\n").as_bytes())
    }
}

/// Writes `name` in `dir` through a temporary file, so the name never holds half a file.
fn write_whole(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, dir.join(name))
}

/// A recording as read back from disk.
#[derive(Debug, Clone)]
pub struct RecordingFiles {
    /// Its folder.
    pub dir: PathBuf,
    /// Its segments in order: only those whose journal line is whole and whose file is
    /// there with that size.
    pub entries: Vec<JournalEntry>,
    /// When the session ended, if the journal says so.
    pub ended_ms: Option<i64>,
    /// The catalog row, if the journal says it was made.
    pub row: Option<i64>,
}

impl RecordingFiles {
    /// Reads the recording in `dir`. A journal cut short by a crash loses only its
    /// unfinished last line.
    pub fn open(dir: &Path) -> std::io::Result<RecordingFiles> {
        let text = std::fs::read(dir.join(JOURNAL))?;
        let text = String::from_utf8_lossy(&text);
        let mut files = RecordingFiles {
            dir: dir.to_path_buf(),
            entries: Vec::new(),
            ended_ms: None,
            row: None,
        };
        // Only lines ended by a newline are whole.
        let whole = match text.rfind('\n') {
            Some(end) => &text[..end],
            None => "",
        };
        for line in whole.lines() {
            let fields: Vec<&str> = line.split('\t').collect();
            match fields.first().copied() {
                Some("seg") => {
                    if let Some(entry) = JournalEntry::parse(&fields[1..])
                        && std::fs::metadata(dir.join(segment_file(entry.msn)))
                            .is_ok_and(|m| m.len() == entry.bytes)
                        && dir.join(init_file(entry.init)).is_file()
                        && files.entries.last().is_none_or(|last| last.msn < entry.msn)
                    {
                        files.entries.push(entry);
                    }
                }
                Some("end") => files.ended_ms = fields.get(1).and_then(|t| t.parse().ok()),
                Some("row") => files.row = fields.get(1).and_then(|t| t.parse().ok()),
                _ => {}
            }
        }
        Ok(files)
    }

    /// Total duration of its segments, ms.
    pub fn duration_ms(&self) -> i64 {
        (self.entries.iter().map(|e| e.duration).sum::<f64>() * 1000.0).round() as i64
    }

    /// Bytes of its segments and the init segments they need.
    pub fn size_bytes(&self) -> u64 {
        let mut inits: Vec<u32> = self.entries.iter().map(|e| e.init).collect();
        inits.dedup();
        inits.sort_unstable();
        inits.dedup();
        let init_bytes: u64 = inits
            .iter()
            .filter_map(|g| std::fs::metadata(self.dir.join(init_file(*g))).ok())
            .map(|m| m.len())
            .sum();
        self.entries.iter().map(|e| e.bytes).sum::<u64>() + init_bytes
    }

    /// Unix ms of its first frame.
    pub fn started_ms(&self) -> Option<i64> {
        self.entries.first().map(|e| e.started_ms)
    }

    /// When it ended: the journal's end, else the end of its last whole segment.
    pub fn end_ms(&self) -> Option<i64> {
        self.ended_ms.or_else(|| {
            self.entries
                .last()
                .map(|e| e.started_ms + (e.duration * 1000.0).round() as i64)
        })
    }

    /// The segments as the VOD code serves them.
    pub fn vod_segments(&self) -> Vec<VodSegment> {
        self.entries
            .iter()
            .map(|e| VodSegment {
                duration: e.duration,
                init: e.init,
                discontinuity: e.discontinuity,
            })
            .collect()
    }

    /// Writes [`LOCAL_PLAYLIST`] (file names as URIs) for FFmpeg, and returns its path.
    pub fn write_local_playlist(&self) -> std::io::Result<PathBuf> {
        let names: Vec<String> = self.entries.iter().map(|e| segment_file(e.msn)).collect();
        let text = vod_playlist(&self.vod_segments(), |i| names[i].clone(), |g| init_file(g));
        write_whole(&self.dir, LOCAL_PLAYLIST, text.as_bytes())?;
        Ok(self.dir.join(LOCAL_PLAYLIST))
    }
}

/// One segment of a replay, recorded or cut from a library file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VodSegment {
    /// Seconds.
    pub duration: f64,
    /// Init segment generation.
    pub init: u32,
    /// A discontinuity comes before it.
    pub discontinuity: bool,
}

/// A VOD media playlist (RFC 8216bis: `EXT-X-PLAYLIST-TYPE:VOD`, `EXT-X-ENDLIST`) of
/// `segments`; `segment_uri(i)` and `init_uri(g)` name the files.
pub fn vod_playlist(
    segments: &[VodSegment],
    segment_uri: impl Fn(usize) -> String,
    init_uri: impl Fn(u32) -> String,
) -> String {
    use std::fmt::Write;
    let target = segments
        .iter()
        .map(|s| s.duration.round() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut out = format!(
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:{target}\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n"
    );
    let mut init = None;
    for (i, s) in segments.iter().enumerate() {
        if s.discontinuity && i > 0 {
            out.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if init != Some(s.init) {
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", init_uri(s.init));
            init = Some(s.init);
        }
        let _ = writeln!(out, "#EXTINF:{:.5},\n{}", s.duration, segment_uri(i));
    }
    out.push_str("#EXT-X-ENDLIST\n");
    out
}

/// Every recording folder under `root` (`{channel}/{session}`), as relative paths.
pub fn list(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(channels) = std::fs::read_dir(root) else {
        return found;
    };
    for channel in channels.flatten() {
        let Ok(sessions) = std::fs::read_dir(channel.path()) else {
            continue;
        };
        for session in sessions.flatten() {
            let rel = format!(
                "{}/{}",
                channel.file_name().to_string_lossy(),
                session.file_name().to_string_lossy()
            );
            if safe_dir(root, &rel).is_some() && session.path().join(JOURNAL).is_file() {
                found.push(rel);
            }
        }
    }
    found.sort();
    found
}

/// Bytes of every file under `root` (recordings, exports, leftovers).
pub fn disk_bytes(root: &Path) -> u64 {
    fn walk(dir: &Path) -> u64 {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| match e.file_type() {
                Ok(t) if t.is_dir() => walk(&e.path()),
                Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
                Err(_) => 0,
            })
            .sum()
    }
    walk(root)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(msn: u64, init: u32, discontinuity: bool) -> JournalEntry {
        JournalEntry {
            msn,
            duration: 2.0,
            init,
            discontinuity,
            bytes: 0,
            started_ms: 1_000 + msn as i64 * 2_000,
        }
    }

    #[test]
    fn paths_outside_the_root_are_refused() {
        let root = Path::new("/rec");
        assert_eq!(safe_dir(root, "st-1/12"), Some(PathBuf::from("/rec/st-1/12")));
        for bad in [
            "", "st-1", "st-1/12/x", "../12", "st-1/..", "/etc/x", "st-1/%2e%2e", "a\\b/1",
            "st-1/.", "st 1/2",
        ] {
            assert_eq!(safe_dir(root, bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_journal_cut_by_a_crash_keeps_every_whole_segment() {
        let root = tempfile::tempdir().unwrap();
        let mut w = Writer::create(root.path(), "st-1/7").unwrap();
        w.init(0, b"init").unwrap();
        w.segment(&entry(0, 0, false), b"zero").unwrap();
        w.segment(&entry(1, 0, false), b"one!").unwrap();
        w.init(1, b"init1").unwrap();
        w.segment(&entry(2, 1, true), b"two").unwrap();
        // A crash: a half-written line, a segment file with no line, a temp file.
        let dir = root.path().join("st-1/7");
        use std::io::Write;
        let mut j = std::fs::OpenOptions::new().append(true).open(dir.join(JOURNAL)).unwrap();
        j.write_all(b"seg\t3\t2.0").unwrap();
        std::fs::write(dir.join(segment_file(3)), b"three").unwrap();
        std::fs::write(dir.join(".seg-4.m4s.tmp"), b"four").unwrap();
        let files = RecordingFiles::open(&dir).unwrap();
        assert_eq!(files.entries.iter().map(|e| e.msn).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(files.duration_ms(), 6_000);
        assert_eq!(files.size_bytes(), 4 + 4 + 3 + 4 + 5);
        assert_eq!(files.end_ms(), Some(1_000 + 4_000 + 2_000));
        assert_eq!(files.ended_ms, None);
        // A segment whose file was lost or cut short is left out.
        std::fs::write(dir.join(segment_file(1)), b"on").unwrap();
        let files = RecordingFiles::open(&dir).unwrap();
        assert_eq!(files.entries.iter().map(|e| e.msn).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(list(root.path()), ["st-1/7"]);
        let before = disk_bytes(&dir);
        assert_eq!(remove(root.path(), "st-1/7").unwrap(), before);
        assert!(!dir.exists());
    }

    #[test]
    fn the_vod_playlist_marks_discontinuities_and_init_changes() {
        let segments = [
            VodSegment { duration: 2.0, init: 0, discontinuity: false },
            VodSegment { duration: 2.4, init: 0, discontinuity: false },
            VodSegment { duration: 1.0, init: 1, discontinuity: true },
        ];
        let text = vod_playlist(&segments, |i| format!("seg-{i}.m4s?vid=x"), |g| format!("init-{g}.mp4"));
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-MAP:URI=\"init-0.mp4\"\n#EXTINF:2.00000,\nseg-0.m4s?vid=x\n#EXTINF:2.40000,\nseg-1.m4s?vid=x\n\
             #EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-1.mp4\"\n#EXTINF:1.00000,\nseg-2.m4s?vid=x\n#EXT-X-ENDLIST\n"
        );
    }
}
