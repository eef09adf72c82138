//! Just enough STUN to route a datagram on the shared UDP socket (is it STUN, which of our
//! peers does its USERNAME, `ourUfrag:theirUfrag`, name, and is it signed with that peer's
//! ICE password) and to answer a detached viewer's consent checks.

use std::net::SocketAddr;

use rtc::crypto::RTCCrypto;
use rtc::stun::fingerprint::FINGERPRINT;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::{BINDING_REQUEST, BINDING_SUCCESS, Message, Setter};
use rtc::stun::xoraddr::XorMappedAddress;

const MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xa4, 0x42];
const ATTR_USERNAME: u16 = 0x0006;

/// Whether the datagram looks like STUN (RFC 7983 demultiplexing plus the magic cookie).
pub fn is_stun(datagram: &[u8]) -> bool {
    datagram.len() >= 20 && datagram[0] < 2 && datagram[4..8] == MAGIC_COOKIE
}

/// The local (our) ufrag from a STUN message's USERNAME attribute, if any.
pub fn local_ufrag(datagram: &[u8]) -> Option<&str> {
    if !is_stun(datagram) {
        return None;
    }
    let declared = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    let end = (20 + declared).min(datagram.len());
    let mut at = 20;
    while at + 4 <= end {
        let kind = u16::from_be_bytes([datagram[at], datagram[at + 1]]);
        let len = u16::from_be_bytes([datagram[at + 2], datagram[at + 3]]) as usize;
        let value = datagram.get(at + 4..at + 4 + len)?;
        if kind == ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next();
        }
        at += 4 + len.div_ceil(4) * 4;
    }
    None
}

/// The Binding request in `datagram` when it carries a MESSAGE-INTEGRITY made with our
/// ICE password `pwd` (short-term credentials, RFC 8489 §9.1; an ICE check, RFC 8445 §7.2).
fn verified_request(datagram: &[u8], pwd: &str, crypto: &dyn RTCCrypto) -> Option<Message> {
    let mut request = Message::new();
    request.unmarshal_binary(datagram).ok()?;
    if request.typ != BINDING_REQUEST {
        return None;
    }
    MessageIntegrity::check(&mut request, pwd.as_bytes(), crypto).ok()?;
    Some(request)
}

/// Whether `datagram` is a Binding request signed with our ICE password `pwd`: only such
/// a check may teach the engine a peer's address.
pub fn signed_request(datagram: &[u8], pwd: &str, crypto: &dyn RTCCrypto) -> bool {
    verified_request(datagram, pwd, crypto).is_some()
}

/// The answer to a consent check (RFC 7675; an ICE Binding request, RFC 8445 §7.3) that
/// `from` sent us: a Binding success naming its address, signed with our ICE password
/// `pwd` and fingerprinted, as an ICE-lite agent answers. `None` when the datagram is not a
/// Binding request signed with that password.
pub fn consent_answer(
    datagram: &[u8],
    from: SocketAddr,
    pwd: &str,
    crypto: &dyn RTCCrypto,
) -> Option<Vec<u8>> {
    let request = verified_request(datagram, pwd, crypto)?;
    let mut answer = Message::new();
    let setters: [Box<dyn Setter + '_>; 5] = [
        Box::new(request),
        Box::new(BINDING_SUCCESS),
        Box::new(XorMappedAddress {
            ip: from.ip(),
            port: from.port(),
        }),
        Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
            pwd.to_string(),
            crypto,
        )),
        Box::new(FINGERPRINT),
    ];
    answer.build(&setters).ok()?;
    Some(answer.raw)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A Binding request naming `username`, signed with `pwd` when given, fingerprinted.
    pub(in crate::relay) fn signed_check(
        username: &str,
        pwd: Option<&str>,
        crypto: &dyn RTCCrypto,
    ) -> Vec<u8> {
        let mut setters: Vec<Box<dyn Setter + '_>> = vec![
            Box::new(BINDING_REQUEST),
            Box::new(rtc::stun::message::TransactionId::new()),
            Box::new(rtc::stun::textattrs::Username::new(
                rtc::stun::attributes::ATTR_USERNAME,
                username.into(),
            )),
        ];
        if let Some(pwd) = pwd {
            setters.push(Box::new(
                MessageIntegrity::new_short_term_integrity_with_provider(pwd.into(), crypto),
            ));
        }
        setters.push(Box::new(FINGERPRINT));
        let mut msg = Message::new();
        msg.build(&setters).unwrap();
        msg.raw
    }

    /// Only a Binding request signed with the password is; a response signed with it, an
    /// unsigned request or one signed with another password is not.
    #[test]
    fn tells_signed_checks() {
        let provider = rtc::crypto::default_provider().unwrap();
        let crypto = provider.crypto();
        let signed = signed_check("ours:theirs", Some("pw"), crypto);
        assert!(signed_request(&signed, "pw", crypto));
        assert!(!signed_request(&signed, "other", crypto));
        assert!(!signed_request(
            &signed_check("ours:theirs", None, crypto),
            "pw",
            crypto
        ));
        let from: SocketAddr = "192.0.2.7:50000".parse().unwrap();
        let response = consent_answer(&signed, from, "pw", crypto).unwrap();
        assert!(!signed_request(&response, "pw", crypto));
        let mut tampered = signed.clone();
        tampered[30] ^= 1;
        assert!(!signed_request(&tampered, "pw", crypto));
    }

    fn binding_request(username: &str) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username.as_bytes());
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        msg.extend_from_slice(&MAGIC_COOKIE);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&attrs);
        msg
    }

    #[test]
    fn finds_our_ufrag() {
        let msg = binding_request("abcd1234:remote");
        assert!(is_stun(&msg));
        assert_eq!(local_ufrag(&msg), Some("abcd1234"));
    }

    /// A signed Binding request gets a signed success with the sender's address; a wrong
    /// password or a response gets nothing.
    #[test]
    fn answers_consent_checks_signed_with_our_password() {
        let provider = rtc::crypto::default_provider().unwrap();
        let crypto = provider.crypto();
        let mut request = Message::new();
        request
            .unmarshal_binary(&signed_check("ours:theirs", Some("our-password"), crypto))
            .unwrap();
        let from: SocketAddr = "192.0.2.7:50000".parse().unwrap();
        let raw = consent_answer(&request.raw, from, "our-password", crypto).expect("answered");
        let mut answer = Message::new();
        answer.unmarshal_binary(&raw).unwrap();
        assert_eq!(answer.typ, BINDING_SUCCESS);
        assert_eq!(answer.transaction_id, request.transaction_id);
        MessageIntegrity::check(&mut answer, b"our-password", crypto).unwrap();
        use rtc::stun::message::Getter;
        let mut mapped = XorMappedAddress::default();
        mapped.get_from(&answer).unwrap();
        assert_eq!(SocketAddr::new(mapped.ip, mapped.port), from);
        assert!(consent_answer(&request.raw, from, "another", crypto).is_none());
        assert!(consent_answer(&raw, from, "our-password", crypto).is_none());
    }

    #[test]
    fn rejects_non_stun_and_truncated() {
        assert!(!is_stun(&[0x80; 40]), "RTP is not STUN");
        assert_eq!(local_ufrag(&[0u8; 10]), None);
        let mut msg = binding_request("abcd:x");
        msg.truncate(26);
        assert_eq!(local_ufrag(&msg), None);
    }
}
