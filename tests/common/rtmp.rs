//! Publishing over RTMP with the ffmpeg CLI, as OBS and hardware encoders do.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Makes the clips with scripts/make-test-media.sh (the ffmpeg CLI) into `dir`.
pub fn make_media(dir: &Path, secs: u32) -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/make-test-media.sh");
    let status = Command::new(script)
        .arg(dir)
        .arg(secs.to_string())
        .stdout(Stdio::null())
        .status()
        .expect("scripts/make-test-media.sh runs");
    assert!(status.success(), "make-test-media.sh failed");
    dir.join("h264-bframes-aac.flv")
}

/// Publishes `file` to `url` in real time with the ffmpeg CLI.
pub fn push_rtmp(file: &Path, url: &str) -> std::process::Child {
    Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-loglevel",
            "error",
            "-re",
            "-i",
        ])
        .arg(file)
        .args(["-c", "copy", "-f", "flv"])
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ffmpeg starts")
}
