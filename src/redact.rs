//! Secrets out of text meant for people: URLs without `user:password@` and without the
//! values of query parameters that look like secrets, in logs, API answers and FFmpeg's
//! own lines. No dependencies: the catalog, the pull sources and the transcode stage's log
//! forwarding share it.

/// Query parameter names whose values are treated as secrets (matched as parts of the
/// lower-cased name, so `api_key`, `access_token` and `X-Amz-Signature` count too). SRT's
/// `passphrase` and `streamid` (which often carries an access token) are among them.
const SECRET_PARAMS: [&str; 10] = [
    "key",
    "token",
    "secret",
    "pass",
    "sig",
    "auth",
    "streamid",
    "credential",
    "session",
    "hdnts",
];

fn is_secret_param(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SECRET_PARAMS.iter().any(|s| name.contains(s))
}

/// The URL without `user:password@` and without the values of query parameters that look
/// like secrets (`token=`, `key=`, `sig=`, SRT's `passphrase=` and `streamid=`, ...), for
/// logs and the API.
pub fn redact_url(url: &str) -> String {
    let base = match url.find("://") {
        Some(scheme) => {
            let rest = &url[scheme + 3..];
            let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{}://***@{}", &url[..scheme], &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    };
    match base.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((k, _)) if is_secret_param(k) => format!("{k}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => base,
    }
}

/// `text` (an error message, an FFmpeg line) with every URL in it passed through
/// [`redact_url`].
pub fn redact_urls_in(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let end = rest[at..]
            .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '<' | '>' | '`'))
            .map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&redact_url(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_and_query_secrets_are_hidden() {
        assert_eq!(
            redact_url("rtsp://admin:secret@10.0.0.5:554/stream1"),
            "rtsp://***@10.0.0.5:554/stream1"
        );
        assert_eq!(
            redact_url("rtsp://admin:p@ss@10.0.0.5/s"),
            "rtsp://***@10.0.0.5/s"
        );
        assert_eq!(redact_url("srt://1.2.3.4:9000"), "srt://1.2.3.4:9000");
        assert_eq!(
            redact_url("srt://1.2.3.4:9000?mode=caller&passphrase=longsecret1&latency=200"),
            "srt://1.2.3.4:9000?mode=caller&passphrase=***&latency=200"
        );
        assert_eq!(
            redact_url("srt://h:1?streamid=#!::r=live,u=me&mode=caller"),
            "srt://h:1?streamid=***&mode=caller"
        );
        assert_eq!(
            redact_url("https://cdn/x.m3u8?X-Amz-Signature=ab&api_key=k&t=1"),
            "https://cdn/x.m3u8?X-Amz-Signature=***&api_key=***&t=1"
        );
        assert_eq!(
            redact_url("http://host/a@b.ts"),
            "http://host/a@b.ts",
            "an @ in the path is not userinfo"
        );
        assert_eq!(
            redact_url("http://host/a?x=1@y"),
            "http://host/a?x=1@y",
            "nor one in the query"
        );
    }

    #[test]
    fn urls_inside_messages_are_redacted() {
        assert_eq!(
            redact_urls_in(
                "cannot open rtsp://a:b@10.0.0.5/cam?token=t1 as media (Server returned 401)"
            ),
            "cannot open rtsp://***@10.0.0.5/cam?token=*** as media (Server returned 401)"
        );
        assert_eq!(
            redact_urls_in("Opening 'https://h/s.ts?sig=x' for reading"),
            "Opening 'https://h/s.ts?sig=***' for reading"
        );
        assert_eq!(redact_urls_in("no url here"), "no url here");
    }
}
