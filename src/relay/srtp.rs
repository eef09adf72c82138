//! The fast path for forwarded media: each viewer's RTP is protected with an SRTP context the
//! engine owns and sent straight to the viewer's socket address, instead of walking rtc's
//! per-packet pipeline (sender checks, interceptors, a chain of handler queues), which was
//! most of the relay's CPU per viewer.
//!
//! rtc keeps the SRTP keys of a connection to itself, but it derives them through the crypto
//! provider the connection is built with. [`KeyTap`] wraps the default provider and notes the
//! first SRTP key-derivation step after the DTLS handshake: RFC 3711 §4.3.1 derives the
//! session keys by AES-encrypting the master salt (label 0 first, counter 0) under the master
//! key, and rtc derives the local context (what we send with) before the remote one. So the
//! first `block_encrypt` call carries our master key, and its input block starts with our
//! master salt; the cipher constructor that follows tells the protection profile. A unit test
//! below checks this against rtc's own SRTP code, and every end-to-end viewer test depends
//! on it (a wrong key means nothing decrypts).
//!
//! rtc itself then sends no RTP and no RTCP on these connections (the viewer interceptor
//! chain has no sender-report interceptor), so its own SRTP context never reuses an index
//! ours has used; sender reports are built here ([`sender_report`]).

use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use rtc::crypto::{
    ActiveKeyExchange, AeadAlgorithm, AeadCipher, BlockCipherAlgorithm, CbcAlgorithm, CbcCipher,
    CryptoAlgorithm, CryptoError, HashAlgorithm, HmacAlgorithm, KeyExchangeAlgorithm, Mac,
    PublicKey, RTCCrypto, RTCCryptoProvider, RTCRandom, SignatureScheme, SigningKey, StreamCipher,
    StreamCipherAlgorithm,
};
use rtc::shared::marshal::{Marshal, MarshalSize};
use rtc::srtp::context::Context;
use rtc::srtp::protection_profile::ProtectionProfile;

/// The SRTP protection profiles viewers may negotiate: the ones [`KeyTap`] can tell apart
/// (RFC 8827 requires AES128_CM_HMAC_SHA1_80; every browser also offers AEAD_AES_128_GCM).
pub(crate) fn viewer_profiles()
-> Vec<rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile> {
    use rtc::dtls::extension::extension_use_srtp::SrtpProtectionProfile as P;
    vec![P::Srtp_Aead_Aes_128_Gcm, P::Srtp_Aes128_Cm_Hmac_Sha1_80]
}

#[derive(Default)]
struct Seen {
    /// Key and input block of the first AES block encryption (the first KDF step).
    first_kdf: Option<(Vec<u8>, [u8; 16])>,
    /// The same for the first block under another key: the remote context's first step.
    second_kdf: Option<(Vec<u8>, [u8; 16])>,
    /// The profile, from the first cipher built after that step.
    profile: Option<ProtectionProfile>,
}

/// A crypto provider that behaves exactly like the default one and remembers the local SRTP
/// master key and salt of the one connection it is given to.
pub(crate) struct KeyTap {
    inner: Arc<dyn RTCCryptoProvider>,
    crypto: TapCrypto,
}

struct TapCrypto {
    inner: Arc<dyn RTCCryptoProvider>,
    seen: Mutex<Seen>,
}

impl KeyTap {
    /// Wraps rtc's default provider.
    pub(crate) fn new() -> Result<Arc<KeyTap>, CryptoError> {
        let inner = rtc::crypto::default_provider()?;
        Ok(Arc::new(KeyTap {
            crypto: TapCrypto {
                inner: inner.clone(),
                seen: Mutex::default(),
            },
            inner,
        }))
    }

    /// The local master key, salt and profile, once the DTLS handshake has derived them.
    fn local_keys(&self) -> Option<(Vec<u8>, Vec<u8>, ProtectionProfile)> {
        self.keys(false)
    }

    /// The local (or with `remote`, the remote) master key, salt and profile.
    fn keys(&self, remote: bool) -> Option<(Vec<u8>, Vec<u8>, ProtectionProfile)> {
        let (key, block, profile) = {
            let seen = self.crypto.seen.lock().ok()?;
            let kdf = if remote {
                &seen.second_kdf
            } else {
                &seen.first_kdf
            };
            let (key, block) = kdf.clone()?;
            (key, block, seen.profile?)
        };
        if key.len() != profile.key_len() {
            return None;
        }
        Some((key, block[..profile.salt_len()].to_vec(), profile))
    }

    /// An SRTP context for what we send, once the DTLS handshake has derived the keys.
    pub(crate) fn local_context(&self) -> Option<Context> {
        let (key, salt, profile) = self.local_keys()?;
        Context::new(&key, &salt, profile, None, None, self.inner.crypto()).ok()
    }

    /// An SRTP context for what the peer sends (its SRTCP), derived right after ours.
    pub(crate) fn remote_context(&self) -> Option<Context> {
        let (key, salt, profile) = self.keys(true)?;
        Context::new(&key, &salt, profile, None, None, self.inner.crypto()).ok()
    }

    /// The AES-GCM fast path for what we send, when that profile was negotiated.
    pub(crate) fn local_gcm(&self) -> Option<GcmRtp> {
        let (key, salt, profile) = self.local_keys()?;
        if !matches!(profile, ProtectionProfile::AeadAes128Gcm) {
            return None;
        }
        GcmRtp::new(self.inner.crypto(), &key, &salt).ok()
    }
}

/// SRTP with AEAD_AES_128_GCM (RFC 7714) for forwarded RTP: one buffer per datagram, the
/// header written once and the payload copied once, then sealed in place. rtc's `Context`
/// does the same work with two SSRC hash-map lookups, a marshal into a scratch buffer and
/// a second copy per packet, which was a fifth of the relay's own CPU per viewer.
pub(crate) struct GcmRtp {
    cipher: Box<dyn AeadCipher>,
    /// Session salt (RFC 3711 §4.3.1, label 2).
    salt: [u8; 12],
}

/// Where one outgoing SSRC's sequence numbers are: its rollover counter (RFC 3711 §3.3.1).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Rollover {
    roc: u32,
    last_seq: Option<u16>,
}

impl Rollover {
    /// The rollover counter of `seq`, an outgoing sequence number: newer numbers advance
    /// the counter when they wrap; an older one (a retransmission) keeps the counter it
    /// was first sent with.
    fn index(&mut self, seq: u16) -> u32 {
        let Some(last) = self.last_seq else {
            self.last_seq = Some(seq);
            return self.roc;
        };
        let newer = seq.wrapping_sub(last) < 0x8000;
        if newer {
            if seq < last {
                self.roc = self.roc.wrapping_add(1);
            }
            self.last_seq = Some(seq);
            self.roc
        } else if seq > last {
            // Sent before the last wrap.
            self.roc.wrapping_sub(1)
        } else {
            self.roc
        }
    }
}

/// RFC 3711 §4.3.1 key derivation with AES-128 in counter mode, key derivation rate 0 (RFC
/// 5764 §4.1.2): the label XORed into the master salt at octet 7, counter 0.
fn derive(
    crypto: &dyn RTCCrypto,
    label: u8,
    master_key: &[u8],
    master_salt: &[u8],
) -> Result<[u8; 16], CryptoError> {
    let mut block = [0u8; 16];
    block[..master_salt.len()].copy_from_slice(master_salt);
    block[7] ^= label;
    crypto.block_encrypt(BlockCipherAlgorithm::Aes128, master_key, &mut block)?;
    Ok(block)
}

impl GcmRtp {
    fn new(
        crypto: &dyn RTCCrypto,
        master_key: &[u8],
        master_salt: &[u8],
    ) -> Result<GcmRtp, CryptoError> {
        let key = derive(crypto, 0x00, master_key, master_salt)?;
        let salt_block = derive(crypto, 0x02, master_key, master_salt)?;
        let mut salt = [0u8; 12];
        salt.copy_from_slice(&salt_block[..12]);
        Ok(GcmRtp {
            cipher: crypto.new_aead(AeadAlgorithm::Aes128Gcm, &key)?,
            salt,
        })
    }

    /// One SRTP datagram: a 12-octet RTP header (no CSRCs, no extensions) for `payload`.
    pub(crate) fn protect(
        &mut self,
        header: &rtc::rtp::header::Header,
        payload: &[u8],
        rollover: &mut Rollover,
    ) -> Option<BytesMut> {
        const TAG: usize = 16;
        let roc = rollover.index(header.sequence_number);
        let mut out = BytesMut::with_capacity(12 + payload.len() + TAG);
        out.extend_from_slice(&[
            0x80,
            (u8::from(header.marker) << 7) | (header.payload_type & 0x7f),
        ]);
        out.extend_from_slice(&header.sequence_number.to_be_bytes());
        out.extend_from_slice(&header.timestamp.to_be_bytes());
        out.extend_from_slice(&header.ssrc.to_be_bytes());
        out.extend_from_slice(payload);
        // RFC 7714 §8.1: 00 00 || SSRC || ROC || SEQ, XORed with the session salt.
        let mut iv = [0u8; 12];
        iv[2..6].copy_from_slice(&header.ssrc.to_be_bytes());
        iv[6..10].copy_from_slice(&roc.to_be_bytes());
        iv[10..12].copy_from_slice(&header.sequence_number.to_be_bytes());
        for (v, s) in iv.iter_mut().zip(self.salt) {
            *v ^= s;
        }
        let mut tag = [0u8; TAG];
        let (aad, body) = out.split_at_mut(12);
        self.cipher.seal_in_place(&iv, aad, body, &mut tag).ok()?;
        out.extend_from_slice(&tag);
        Some(out)
    }
}

impl RTCCryptoProvider for KeyTap {
    fn name(&self) -> &'static str {
        "feiyan-key-tap"
    }

    fn crypto(&self) -> &dyn RTCCrypto {
        &self.crypto
    }

    fn random(&self) -> &dyn RTCRandom {
        self.inner.random()
    }
}

impl TapCrypto {
    fn note_cipher(&self, profile: ProtectionProfile) {
        if let Ok(mut seen) = self.seen.lock()
            && seen.first_kdf.is_some()
            && seen.profile.is_none()
        {
            seen.profile = Some(profile);
        }
    }
}

impl RTCCrypto for TapCrypto {
    fn supports(&self, algorithm: CryptoAlgorithm) -> bool {
        self.inner.crypto().supports(algorithm)
    }

    fn hash(&self, algorithm: HashAlgorithm, data: &[u8]) -> Result<Vec<u8>, CryptoError> {
        self.inner.crypto().hash(algorithm, data)
    }

    fn block_encrypt(
        &self,
        algorithm: BlockCipherAlgorithm,
        key: &[u8],
        block: &mut [u8],
    ) -> Result<(), CryptoError> {
        if let Ok(mut seen) = self.seen.lock()
            && let Ok(input) = <[u8; 16]>::try_from(&*block)
        {
            match &seen.first_kdf {
                None => seen.first_kdf = Some((key.to_vec(), input)),
                Some((first, _)) if seen.second_kdf.is_none() && first != key => {
                    seen.second_kdf = Some((key.to_vec(), input));
                }
                Some(_) => {}
            }
        }
        self.inner.crypto().block_encrypt(algorithm, key, block)
    }

    fn new_hmac(&self, algorithm: HmacAlgorithm, key: &[u8]) -> Result<Box<dyn Mac>, CryptoError> {
        self.inner.crypto().new_hmac(algorithm, key)
    }

    fn new_stream_cipher(
        &self,
        algorithm: StreamCipherAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn StreamCipher>, CryptoError> {
        if algorithm == StreamCipherAlgorithm::Aes128Ctr {
            self.note_cipher(ProtectionProfile::Aes128CmHmacSha1_80);
        }
        self.inner.crypto().new_stream_cipher(algorithm, key)
    }

    fn new_aead(
        &self,
        algorithm: AeadAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn AeadCipher>, CryptoError> {
        if algorithm == AeadAlgorithm::Aes128Gcm {
            self.note_cipher(ProtectionProfile::AeadAes128Gcm);
        }
        self.inner.crypto().new_aead(algorithm, key)
    }

    fn new_cbc(
        &self,
        algorithm: CbcAlgorithm,
        key: &[u8],
    ) -> Result<Box<dyn CbcCipher>, CryptoError> {
        self.inner.crypto().new_cbc(algorithm, key)
    }

    fn start_key_exchange(
        &self,
        algorithm: KeyExchangeAlgorithm,
    ) -> Result<Box<dyn ActiveKeyExchange>, CryptoError> {
        self.inner.crypto().start_key_exchange(algorithm)
    }

    fn generate_signing_key(
        &self,
        scheme: SignatureScheme,
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().generate_signing_key(scheme)
    }

    fn import_signing_key(
        &self,
        scheme: SignatureScheme,
        pkcs8_der: &[u8],
    ) -> Result<Arc<dyn SigningKey>, CryptoError> {
        self.inner.crypto().import_signing_key(scheme, pkcs8_der)
    }

    fn verify_signature(
        &self,
        scheme: SignatureScheme,
        public_key: PublicKey<'_>,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), CryptoError> {
        self.inner
            .crypto()
            .verify_signature(scheme, public_key, message, signature)
    }
}

/// Protects one RTP packet for a viewer. `scratch` is reused for the plaintext.
pub(crate) fn protect_rtp(
    context: &mut Context,
    packet: &rtc::rtp::Packet,
    scratch: &mut Vec<u8>,
) -> Option<BytesMut> {
    let len = packet.marshal_size();
    scratch.resize(len, 0);
    let written = packet.marshal_to(scratch).ok()?;
    context
        .encrypt_rtp_with_header(&scratch[..written], &packet.header)
        .ok()
}

/// A sender report for one of a viewer's tracks (RFC 3550 §6.4.1): its RTP time now, for
/// lip sync, and what was sent on it.
pub(crate) struct SenderReportInput {
    /// The track's SSRC.
    pub(crate) ssrc: u32,
    /// The RTP timestamp that corresponds to now.
    pub(crate) rtp_time: u32,
    /// Packets sent.
    pub(crate) packets: u32,
    /// Payload octets sent.
    pub(crate) octets: u32,
}

/// One compound SRTCP packet with a sender report per track.
pub(crate) fn sender_report(
    context: &mut Context,
    tracks: &[SenderReportInput],
    now: std::time::SystemTime,
) -> Option<BytesMut> {
    if tracks.is_empty() {
        return None;
    }
    let since_1900 = now
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs_f64()
        + 2_208_988_800.0;
    let ntp_time = ((since_1900.trunc() as u64) << 32)
        | ((since_1900.fract() * 4_294_967_296.0) as u64 & 0xFFFF_FFFF);
    let packets: Vec<Box<dyn rtc::rtcp::Packet>> = tracks
        .iter()
        .map(|t| {
            Box::new(rtc::rtcp::sender_report::SenderReport {
                ssrc: t.ssrc,
                ntp_time,
                rtp_time: t.rtp_time,
                packet_count: t.packets,
                octet_count: t.octets,
                ..Default::default()
            }) as Box<dyn rtc::rtcp::Packet>
        })
        .collect();
    let plain = rtc::rtcp::packet::marshal(&packets).ok()?;
    context.encrypt_rtcp(&plain).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rtc's SRTP code, given our tap as its crypto, must reveal exactly the key and salt
    /// it was built with, and a context rebuilt from them must produce identical output.
    #[test]
    fn the_tap_recovers_the_local_master_key_and_salt() {
        for profile in [
            ProtectionProfile::AeadAes128Gcm,
            ProtectionProfile::Aes128CmHmacSha1_80,
        ] {
            let tap = KeyTap::new().unwrap();
            let key: Vec<u8> = (0..profile.key_len() as u8).collect();
            let salt: Vec<u8> = (100..100 + profile.salt_len() as u8).collect();
            // What rtc does after the handshake: the local context, then the remote one.
            let mut theirs = Context::new(&key, &salt, profile, None, None, tap.crypto()).unwrap();
            let other_key = vec![7u8; profile.key_len()];
            let other_salt: Vec<u8> = (30..30 + profile.salt_len() as u8).collect();
            let _remote =
                Context::new(&other_key, &other_salt, profile, None, None, tap.crypto()).unwrap();
            let mut ours = tap.local_context().expect("keys seen");
            // The peer protects its RTCP with what is our remote context's key.
            let inner = rtc::crypto::default_provider().unwrap();
            let mut peer =
                Context::new(&other_key, &other_salt, profile, None, None, inner.crypto()).unwrap();
            let report = [
                0x81u8, 201, 0, 7, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 5, 0, 0, 3,
            ]
            .into_iter()
            .chain([0u8; 16])
            .collect::<Vec<u8>>();
            let sealed = peer.encrypt_rtcp(&report).unwrap();
            let opened = tap
                .remote_context()
                .expect("remote keys seen")
                .decrypt_rtcp(&sealed)
                .unwrap();
            assert_eq!(&opened[..], &report[..], "{profile:?}");
            let packet = super::super::media::packet(
                102,
                0x1234_5678,
                4242,
                90_000,
                true,
                bytes::Bytes::from_static(b"a keyframe slice"),
            );
            let mut scratch = Vec::new();
            let a = protect_rtp(&mut theirs, &packet, &mut scratch).unwrap();
            let b = protect_rtp(&mut ours, &packet, &mut scratch).unwrap();
            assert_eq!(a, b, "{profile:?}");
            assert_eq!(
                tap.local_gcm().is_some(),
                matches!(profile, ProtectionProfile::AeadAes128Gcm)
            );
        }
    }

    /// The GCM fast path must produce rtc's datagrams byte for byte, across a sequence
    /// number wrap and for a retransmission sent after it.
    #[test]
    fn the_gcm_fast_path_matches_rtc() {
        let tap = KeyTap::new().unwrap();
        let profile = ProtectionProfile::AeadAes128Gcm;
        let key: Vec<u8> = (0..16).map(|i| i * 7 + 1).collect();
        let salt: Vec<u8> = (0..12).map(|i| 200 - i * 3).collect();
        let mut theirs = Context::new(&key, &salt, profile, None, None, tap.crypto()).unwrap();
        let mut ours = tap.local_gcm().expect("a GCM context");
        let mut rollover = Rollover::default();
        let mut scratch = Vec::new();
        let seqs = [65_530u16, 65_533, 65_535, 0, 1, 65_534, 2, 3];
        for (i, seq) in seqs.into_iter().enumerate() {
            let payload = bytes::Bytes::from(vec![i as u8; 100 + i * 37]);
            let packet = super::super::media::packet(
                111,
                0xdead_beef,
                seq,
                48_000 + i as u32 * 960,
                i % 3 == 0,
                payload.clone(),
            );
            let a = protect_rtp(&mut theirs, &packet, &mut scratch).unwrap();
            let b = ours
                .protect(&packet.header, &payload, &mut rollover)
                .unwrap();
            assert_eq!(a, b, "packet {i} (seq {seq})");
        }
    }
}
