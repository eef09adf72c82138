//! Just enough STUN parsing to route a datagram on the shared UDP socket: is it STUN, and
//! which of our peers does its USERNAME (`ourUfrag:theirUfrag`) name.

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

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn rejects_non_stun_and_truncated() {
        assert!(!is_stun(&[0x80; 40]), "RTP is not STUN");
        assert_eq!(local_ufrag(&[0u8; 10]), None);
        let mut msg = binding_request("abcd:x");
        msg.truncate(26);
        assert_eq!(local_ufrag(&msg), None);
    }
}
