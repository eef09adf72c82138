//! Large files from disk (a replay's MP4 download): `Accept-Ranges: bytes`, one range per
//! request (`206` with `Content-Range`, `416` when it cannot be satisfied), `HEAD`, and the
//! body streamed from disk in [`CHUNK`]-byte reads, so a 2 GB file costs the server one
//! chunk of memory per download, not the file.
//!
//! The `Range` grammar is [`crate::hls::routes::parse_range`], the one HLS answers with.

use std::io;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::Stream;
use tokio::io::{AsyncRead, AsyncSeekExt, ReadBuf};
use warp::Reply;
use warp::http::{HeaderValue, StatusCode, header};
use warp::reply::Response;

use crate::hls::routes::parse_range;

/// Bytes read from disk at a time.
pub const CHUNK: usize = 64 * 1024;

/// Answers a request for the file at `path`: the whole file (`200`), the single range
/// asked for (`206`), or `416` with `Content-Range: bytes */{size}`; with `method_head`
/// the same status and headers without a body. `download_name` adds
/// `Content-Disposition: attachment` with that name (UTF-8, RFC 6266 `filename*`, and an
/// ASCII `filename` for old clients).
///
/// An error is the file's: not there (`NotFound`), not a regular file, or unreadable;
/// the caller maps it to a status.
pub async fn file_response(
    path: &Path,
    method_head: bool,
    range: Option<&str>,
    content_type: &str,
    cache_control: &str,
    download_name: Option<&str>,
) -> Result<Response, io::Error> {
    let mut file = tokio::fs::File::open(path).await?;
    let meta = file.metadata().await?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not a file", path.display()),
        ));
    }
    let total = meta.len();
    let (status, start, len) = match range.map(|r| parse_range(r, total)) {
        None => (StatusCode::OK, 0, total),
        Some(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Some(None) => {
            let mut response = Response::new("range not satisfiable\n".into());
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            let h = response.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            return Ok(response);
        }
    };
    let mut response = if method_head || len == 0 {
        Response::new(Bytes::new().into())
    } else {
        if start > 0 {
            file.seek(io::SeekFrom::Start(start)).await?;
        }
        warp::reply::stream(FileChunks {
            file,
            remaining: len,
            buf: vec![0; CHUNK.min(usize::try_from(len).unwrap_or(CHUNK))],
        })
        .into_response()
    };
    *response.status_mut() = status;
    let h = response.headers_mut();
    let value = |text: &str| {
        HeaderValue::from_str(text).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{text:?} is not a header value"),
            )
        })
    };
    h.insert(header::CONTENT_TYPE, value(content_type)?);
    h.insert(header::CACHE_CONTROL, value(cache_control)?);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if status == StatusCode::PARTIAL_CONTENT {
        let end = start + len - 1;
        h.insert(
            header::CONTENT_RANGE,
            value(&format!("bytes {start}-{end}/{total}"))?,
        );
    }
    if let Some(name) = download_name {
        h.insert(
            header::CONTENT_DISPOSITION,
            value(&content_disposition(name))?,
        );
    }
    Ok(response)
}

/// `attachment; filename="ascii"; filename*=UTF-8''percent-encoded` (RFC 6266, RFC 8187).
pub fn content_disposition(name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if (c.is_ascii_graphic() && c != '"' && c != '\\') || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::with_capacity(name.len() * 3);
    for b in name.bytes() {
        // RFC 8187 attr-char: ALPHA / DIGIT / "!#$&+-.^_`|~"; everything else encoded.
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// `remaining` bytes of `file` from where it stands, [`CHUNK`] at a time.
struct FileChunks {
    file: tokio::fs::File,
    remaining: u64,
    /// One chunk, reused for every read.
    buf: Vec<u8>,
}

impl Stream for FileChunks {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.remaining == 0 {
            return Poll::Ready(None);
        }
        let want = usize::try_from(this.remaining)
            .unwrap_or(usize::MAX)
            .min(this.buf.len());
        let mut read = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut read) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(err)) => {
                this.remaining = 0;
                Poll::Ready(Some(Err(err)))
            }
            Poll::Ready(Ok(())) if read.filled().is_empty() => {
                // The file shrank under us: end the body short rather than pad it.
                this.remaining = 0;
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file ended before its announced length",
                ))))
            }
            Poll::Ready(Ok(())) => {
                let chunk = Bytes::copy_from_slice(read.filled());
                this.remaining -= chunk.len() as u64;
                Poll::Ready(Some(Ok(chunk)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Body as _;

    /// The body of `response`, read frame by frame.
    async fn body(response: Response) -> (Vec<u8>, usize) {
        let mut body = response.into_body();
        let (mut bytes, mut frames) = (Vec::new(), 0);
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await
        {
            let frame = frame.expect("a frame");
            if let Ok(data) = frame.into_data() {
                frames += 1;
                bytes.extend_from_slice(&data);
            }
        }
        (bytes, frames)
    }

    fn header(response: &Response, name: header::HeaderName) -> &str {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[tokio::test]
    async fn whole_ranged_head_and_unsatisfiable_answers() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("replay.mp4");
        let content: Vec<u8> = (0..(5 * CHUNK + 17) as u32)
            .map(|i| (i % 251) as u8)
            .collect();
        std::fs::write(&path, &content).expect("write");
        let total = content.len();
        let get = |range: Option<&'static str>, head: bool| {
            let path = path.clone();
            async move {
                file_response(
                    &path,
                    head,
                    range,
                    "video/mp4",
                    "private, max-age=3600",
                    Some("讲座 2026-12-01.mp4"),
                )
                .await
                .expect("an answer")
            }
        };

        let full = get(None, false).await;
        assert_eq!(full.status(), StatusCode::OK);
        assert_eq!(header(&full, header::CONTENT_LENGTH), total.to_string());
        assert_eq!(header(&full, header::ACCEPT_RANGES), "bytes");
        assert_eq!(header(&full, header::CONTENT_TYPE), "video/mp4");
        assert_eq!(
            header(&full, header::CACHE_CONTROL),
            "private, max-age=3600"
        );
        assert_eq!(
            header(&full, header::CONTENT_DISPOSITION),
            "attachment; filename=\"__ 2026-12-01.mp4\"; \
             filename*=UTF-8''%E8%AE%B2%E5%BA%A7%202026-12-01.mp4"
        );
        let (bytes, frames) = body(full).await;
        assert_eq!(bytes, content);
        assert_eq!(frames, 6, "streamed in chunks of {CHUNK} bytes");

        let part = get(Some("bytes=100000-200000"), false).await;
        assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(
            header(&part, header::CONTENT_RANGE),
            format!("bytes 100000-200000/{total}")
        );
        assert_eq!(header(&part, header::CONTENT_LENGTH), "100001");
        assert_eq!(body(part).await.0, &content[100_000..=200_000]);

        let tail = get(Some("bytes=-10"), false).await;
        assert_eq!(tail.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(body(tail).await.0, &content[total - 10..]);

        let head = get(Some("bytes=0-99"), true).await;
        assert_eq!(head.status(), StatusCode::PARTIAL_CONTENT);
        assert_eq!(header(&head, header::CONTENT_LENGTH), "100");
        assert_eq!(body(head).await.0, b"");
        let head = get(None, true).await;
        assert_eq!(head.status(), StatusCode::OK);
        assert_eq!(header(&head, header::CONTENT_LENGTH), total.to_string());
        assert_eq!(body(head).await.0, b"");

        let beyond = get(Some("bytes=999999999-"), false).await;
        assert_eq!(beyond.status(), StatusCode::RANGE_NOT_SATISFIABLE);
        assert_eq!(
            header(&beyond, header::CONTENT_RANGE),
            format!("bytes */{total}")
        );

        let missing = file_response(
            &dir.path().join("gone.mp4"),
            false,
            None,
            "video/mp4",
            "no-cache",
            None,
        )
        .await
        .expect_err("no file");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let folder = file_response(dir.path(), false, None, "video/mp4", "no-cache", None)
            .await
            .expect_err("a folder");
        assert_eq!(folder.kind(), io::ErrorKind::NotFound);
    }
}
