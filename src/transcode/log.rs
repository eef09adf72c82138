//! FFmpeg's own log lines (a demuxer that cannot open a segment, a decoder that finds
//! damage) go through `tracing` instead of straight to stderr: in the server's log
//! format, with URLs passed through [`crate::redact::redact_urls_in`], so a camera's
//! password or a signed URL a pull source names never reaches the log.
//!
//! The callback receives FFmpeg's `va_list` and hands it unread to
//! `av_log_format_line2`; its Rust type is the platform's, so forwarding is built for
//! x86_64 (the only platform this server ships for); elsewhere FFmpeg keeps printing to
//! stderr.

use ffmpeg_next as ffmpeg;

/// Routes FFmpeg's log lines at or above its log level through `tracing`.
pub(super) fn forward_to_tracing() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `forward` has the signature FFmpeg calls and is callable from any thread.
    unsafe {
        ffmpeg::ffi::av_log_set_callback(Some(forward));
    }
}

#[cfg(target_arch = "x86_64")]
unsafe extern "C" fn forward(
    avcl: *mut libc::c_void,
    level: libc::c_int,
    fmt: *const libc::c_char,
    args: *mut ffmpeg::ffi::__va_list_tag,
) {
    // SAFETY: reading FFmpeg's global level is what its default callback does.
    if level > unsafe { ffmpeg::ffi::av_log_get_level() } {
        return;
    }
    let mut line = [0 as libc::c_char; 1024];
    let mut prefix: libc::c_int = 1;
    // SAFETY: `args` is the va_list FFmpeg passed for `fmt`, used once, here; the buffer
    // is writable for its length and FFmpeg NUL-terminates what it writes (truncating).
    let written = unsafe {
        ffmpeg::ffi::av_log_format_line2(
            avcl,
            level,
            fmt,
            args,
            line.as_mut_ptr(),
            line.len() as libc::c_int,
            &mut prefix,
        )
    };
    if written < 0 {
        return;
    }
    // SAFETY: NUL-terminated by av_log_format_line2 (the buffer was zeroed besides).
    let text = unsafe { std::ffi::CStr::from_ptr(line.as_ptr()) };
    emit(level, &text.to_string_lossy());
}

/// One FFmpeg line, redacted, at the matching `tracing` level.
fn emit(level: i32, text: &str) {
    let text = text.trim_end();
    if text.is_empty() {
        return;
    }
    let line = crate::redact::redact_urls_in(text);
    if level <= ffmpeg::ffi::AV_LOG_ERROR {
        tracing::warn!(target: "ffmpeg", "{line}");
    } else if level <= ffmpeg::ffi::AV_LOG_WARNING {
        tracing::info!(target: "ffmpeg", "{line}");
    } else {
        tracing::debug!(target: "ffmpeg", "{line}");
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A line FFmpeg logs with a camera's password and a signed URL in it reaches the
    /// log redacted, at warn, under the `ffmpeg` target.
    #[test]
    fn ffmpeg_lines_reach_tracing_without_secrets() {
        super::super::init();
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let url = std::ffi::CString::new(
                "rtsp://admin:hunter2@10.0.0.5/s https://cdn/seg.ts?token=abc123&n=1",
            )
            .unwrap();
            // SAFETY: a printf-style call with one %s argument matching the format.
            unsafe {
                ffmpeg::ffi::av_log(
                    std::ptr::null_mut(),
                    ffmpeg::ffi::AV_LOG_ERROR,
                    c"Opening %s failed\n".as_ptr(),
                    url.as_ptr(),
                );
                // Below the level set by `init` (errors): not forwarded.
                ffmpeg::ffi::av_log(
                    std::ptr::null_mut(),
                    ffmpeg::ffi::AV_LOG_INFO,
                    c"chatty %s\n".as_ptr(),
                    url.as_ptr(),
                );
            }
        });
        let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(log.contains("WARN ffmpeg: Opening"), "{log}");
        assert!(log.contains("rtsp://***@10.0.0.5/s"), "{log}");
        assert!(log.contains("token=***&n=1"), "{log}");
        assert!(!log.contains("hunter2") && !log.contains("abc123"), "{log}");
        assert!(!log.contains("chatty"), "{log}");
    }
}
