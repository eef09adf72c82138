//! A media file through the server's demux and transcode stage, as a pull source or a film
//! runs it: what `feiyan-fuzz decode` runs under valgrind on the 1080p -> 64x64 in-band SPS
//! switch (`scripts/fuzz.sh`), and what `tests/fuzz.rs` checks of it.

use crate::config::VideoMode;
use crate::transcode::demux::Demuxer;
use crate::transcode::{Encoded, TranscodeError, TranscodeOptions, Transcoder};

/// Demuxes `path` and transcodes its video to 360p H.264 (libx264, as a ladder rung):
/// returns the packets read and the pictures encoded.
pub fn transcode_file(path: &str) -> Result<(usize, usize), TranscodeError> {
    let mut demuxer = Demuxer::open(path, &[])?;
    let options = TranscodeOptions {
        video_mode: VideoMode::Transcode,
        video_kbps: 300,
        scale_height: Some(360),
        ..TranscodeOptions::default()
    };
    let (transcoder, mut out) =
        Transcoder::start(demuxer.take_video(), demuxer.take_audio(), &options)?;
    let drain = std::thread::spawn(move || {
        let mut pictures = 0usize;
        while let Some(e) = out.blocking_recv() {
            if let Encoded::Video { .. } = e {
                pictures += 1;
            }
        }
        pictures
    });
    let mut packets = 0usize;
    while let Some(p) = demuxer.read()? {
        transcoder.push_blocking(p)?;
        packets += 1;
    }
    transcoder.finish();
    let pictures = drain.join().unwrap_or(0);
    Ok((packets, pictures))
}
