//! Signed edge pulls: an edge's `POST /whep/{channel}?edge={node}` carries
//! `x-feiyan-cluster: {unix seconds}.{hex HMAC-SHA256(secret, "METHOD\nPATH\nSECONDS")}`.
//! The origin recomputes it with its own copy of the cluster secret, so the secret never
//! crosses the network; a signature older or newer than [`MAX_SKEW_SECS`] is refused
//! (a captured header is useless a minute later).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header an edge pull's signature travels in.
pub const HEADER: &str = "x-feiyan-cluster";

/// How far a signature's time may be from the origin's clock.
pub const MAX_SKEW_SECS: i64 = 60;

/// Why a signature was refused (each a 401 with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `x-feiyan-cluster` header.
    #[error("edge pulls must be signed: send x-feiyan-cluster (see docs/cluster.md)")]
    Missing,
    /// Not `SECONDS.HEX`.
    #[error("x-feiyan-cluster is malformed: expected SECONDS.HEX")]
    Malformed,
    /// The time is too far from the origin's clock.
    #[error("x-feiyan-cluster is stale: its time is {0} s from this node's clock (at most 60)")]
    Stale(i64),
    /// The HMAC does not match this node's cluster secret.
    #[error("x-feiyan-cluster does not match this cluster's secret")]
    Wrong,
    /// This node is not a cluster member.
    #[error("this node is not a cluster member; it serves no edge pulls")]
    NotMember,
}

fn mac(secret: &[u8], method: &str, path: &str, secs: i64) -> Hmac<Sha256> {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(method.as_bytes());
    mac.update(b"\n");
    mac.update(path.as_bytes());
    mac.update(b"\n");
    mac.update(secs.to_string().as_bytes());
    mac
}

/// The header value for `method path` at unix time `secs`.
pub fn sign(secret: &[u8], method: &str, path: &str, secs: i64) -> String {
    let tag = mac(secret, method, path, secs).finalize().into_bytes();
    format!("{secs}.{}", hex::encode(tag))
}

/// Checks a header value for `method path` at the origin's unix time `now_secs`.
pub fn verify(
    secret: &[u8],
    method: &str,
    path: &str,
    header: Option<&str>,
    now_secs: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let (secs, tag) = header
        .trim()
        .split_once('.')
        .ok_or(SignatureError::Malformed)?;
    let secs: i64 = secs.parse().map_err(|_| SignatureError::Malformed)?;
    let tag = hex::decode(tag).map_err(|_| SignatureError::Malformed)?;
    let skew = now_secs.saturating_sub(secs);
    if skew.abs() > MAX_SKEW_SECS {
        return Err(SignatureError::Stale(skew));
    }
    mac(secret, method, path, secs)
        .verify_slice(&tag)
        .map_err(|_| SignatureError::Wrong)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_signature_verifies_only_for_its_request_and_time() {
        let h = sign(SECRET, "POST", "/whep/st-1", 1_000);
        assert_eq!(
            verify(SECRET, "POST", "/whep/st-1", Some(&h), 1_030),
            Ok(())
        );
        assert_eq!(
            verify(SECRET, "POST", "/whep/st-2", Some(&h), 1_000),
            Err(SignatureError::Wrong)
        );
        assert_eq!(
            verify(
                b"another secret of 32 bytes or so!",
                "POST",
                "/whep/st-1",
                Some(&h),
                1_000
            ),
            Err(SignatureError::Wrong)
        );
        assert_eq!(
            verify(SECRET, "POST", "/whep/st-1", Some(&h), 1_100),
            Err(SignatureError::Stale(100))
        );
        assert_eq!(
            verify(SECRET, "POST", "/whep/st-1", None, 1_000),
            Err(SignatureError::Missing)
        );
        assert_eq!(
            verify(SECRET, "POST", "/whep/st-1", Some("12.zz"), 12),
            Err(SignatureError::Malformed)
        );
    }
}
