//! H.264 bitstream plumbing for passthrough (no ffmpeg): the `avcC` decoder configuration
//! record, length-prefixed (AVCC) to Annex-B conversion, and SPS/PPS put in-band before
//! every IDR so a viewer that joins on any keyframe can decode it.

use bytes::{BufMut, Bytes, BytesMut};

use super::TranscodeError;
pub use crate::media::sps::{SpsInfo, read_sps, unescape_rbsp};

const START_CODE: [u8; 4] = [0, 0, 0, 1];
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// The parts of an `AVCDecoderConfigurationRecord` (ISO 14496-15 §5.2.4.1) passthrough needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// `profile_idc` of the stream: 66 (baseline) cannot carry B-frames.
    pub profile_idc: u8,
    /// Bytes in each NAL length prefix (1, 2 or 4).
    pub nal_length_size: usize,
    /// Sequence parameter sets, without start codes.
    pub sps: Vec<Bytes>,
    /// Picture parameter sets, without start codes.
    pub pps: Vec<Bytes>,
}

impl AvcConfig {
    /// Parses an `avcC` record (the FLV AVC sequence header body, or MP4/MKV extradata).
    pub fn parse(data: &[u8]) -> Result<AvcConfig, TranscodeError> {
        let bad = |what: &str| TranscodeError::BadInput(format!("H.264 avcC record: {what}"));
        if data.len() < 7 || data[0] != 1 {
            return Err(bad("too short or not version 1"));
        }
        let profile_idc = data[1];
        let nal_length_size = usize::from(data[4] & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(bad("3-byte NAL lengths are not allowed"));
        }
        let mut at = 5;
        let read_sets = |count: usize, at: &mut usize| -> Result<Vec<Bytes>, TranscodeError> {
            let mut sets = Vec::with_capacity(count);
            for _ in 0..count {
                let len_bytes = data.get(*at..*at + 2).ok_or_else(|| bad("truncated"))?;
                let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
                let set = data
                    .get(*at + 2..*at + 2 + len)
                    .ok_or_else(|| bad("truncated parameter set"))?;
                sets.push(Bytes::copy_from_slice(set));
                *at += 2 + len;
            }
            Ok(sets)
        };
        let sps_count = usize::from(data[at] & 0x1f);
        at += 1;
        let sps = read_sets(sps_count, &mut at)?;
        let pps_count = usize::from(*data.get(at).ok_or_else(|| bad("no PPS count"))?);
        at += 1;
        let pps = read_sets(pps_count, &mut at)?;
        if sps.is_empty() || pps.is_empty() {
            return Err(bad("no SPS or no PPS"));
        }
        Ok(AvcConfig {
            profile_idc,
            nal_length_size,
            sps,
            pps,
        })
    }
}

/// Splits one length-prefixed sample into NAL units.
pub fn split_length_prefixed(
    data: &[u8],
    length_size: usize,
) -> Result<Vec<&[u8]>, TranscodeError> {
    let mut nals = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let prefix = data
            .get(at..at + length_size)
            .ok_or_else(|| TranscodeError::BadInput("H.264 sample: truncated NAL length".into()))?;
        let len = prefix
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        at += length_size;
        let nal = data.get(at..at + len).ok_or_else(|| {
            TranscodeError::BadInput(format!(
                "H.264 sample: NAL of {len} bytes overruns the {}-byte sample",
                data.len()
            ))
        })?;
        if !nal.is_empty() {
            nals.push(nal);
        }
        at += len;
    }
    Ok(nals)
}

/// Splits an Annex-B byte stream into NAL units (without start codes).
pub fn split_annexb(data: &[u8]) -> Vec<&[u8]> {
    let mut nals = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    let mut push = |from: usize, to: usize| {
        let mut nal = &data[from..to];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            nals.push(nal);
        }
    };
    while i + 2 < data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if let Some(s) = start {
                push(s, i);
            }
            i += 3;
            start = Some(i);
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        push(s.min(data.len()), data.len());
    }
    nals
}

/// Turns source access units into Annex-B access units ready for RTP, keeping the latest
/// SPS/PPS and putting them in front of every IDR that lacks them.
#[derive(Debug, Clone)]
pub struct AnnexbWriter {
    /// `Some(n)` for length-prefixed input (n-byte lengths), `None` for Annex-B input.
    length_size: Option<usize>,
    /// Latest parameter sets, from the config record or seen in-band.
    sps: Vec<Bytes>,
    pps: Vec<Bytes>,
}

impl AnnexbWriter {
    /// A writer for length-prefixed samples described by `config`.
    pub fn for_avcc(config: &AvcConfig) -> AnnexbWriter {
        AnnexbWriter {
            length_size: Some(config.nal_length_size),
            sps: config.sps.clone(),
            pps: config.pps.clone(),
        }
    }

    /// A writer for Annex-B input (MPEG-TS, raw .h264); parameter sets come in-band.
    pub fn for_annexb() -> AnnexbWriter {
        AnnexbWriter {
            length_size: None,
            sps: Vec::new(),
            pps: Vec::new(),
        }
    }

    /// A writer for Annex-B input whose parameter sets also came out of band, as Annex-B
    /// extradata (RTSP's SDP `sprop-parameter-sets`, some MPEG-TS muxers): they are put in
    /// front of IDRs until the stream sends its own.
    pub fn for_annexb_seeded(extradata: &[u8]) -> AnnexbWriter {
        let mut writer = AnnexbWriter::for_annexb();
        for nal in split_annexb(extradata) {
            match nal.first().map(|b| b & 0x1f) {
                Some(NAL_SPS) => writer.sps.push(Bytes::copy_from_slice(nal)),
                Some(NAL_PPS) => writer.pps.push(Bytes::copy_from_slice(nal)),
                _ => {}
            }
        }
        writer
    }

    /// Converts one access unit. Returns the Annex-B bytes and whether it holds an IDR.
    /// Access unit delimiters are dropped (browsers do not need them).
    pub fn convert(&mut self, sample: &[u8]) -> Result<(Bytes, bool), TranscodeError> {
        let nals = match self.length_size {
            Some(n) => split_length_prefixed(sample, n)?,
            None => split_annexb(sample),
        };
        let types = || nals.iter().map(|n| n[0] & 0x1f);
        let has_idr = types().any(|t| t == NAL_IDR);
        let has_sps = types().any(|t| t == NAL_SPS);
        let has_pps = types().any(|t| t == NAL_PPS);
        let mut in_band_sps = Vec::new();
        let mut in_band_pps = Vec::new();
        let mut out = BytesMut::with_capacity(sample.len() + 64);
        if has_idr && !(has_sps && has_pps) {
            for set in self.sps.iter().chain(self.pps.iter()) {
                out.put_slice(&START_CODE);
                out.put_slice(set);
            }
        }
        for nal in &nals {
            match nal[0] & 0x1f {
                NAL_AUD => continue,
                NAL_SPS => in_band_sps.push(Bytes::copy_from_slice(nal)),
                NAL_PPS => in_band_pps.push(Bytes::copy_from_slice(nal)),
                _ => {}
            }
            out.put_slice(&START_CODE);
            out.put_slice(nal);
        }
        if !in_band_sps.is_empty() {
            self.sps = in_band_sps;
        }
        if !in_band_pps.is_empty() {
            self.pps = in_band_pps;
        }
        Ok((out.freeze(), has_idr))
    }
}

/// Parses a sequence parameter set NAL unit (header byte included, no start code) far
/// enough to know the picture size (see [`read_sps`]).
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, TranscodeError> {
    let bad = |what: &str| TranscodeError::BadInput(format!("H.264 SPS: {what}"));
    if nal.first().map(|b| b & 0x1f) != Some(NAL_SPS) {
        return Err(bad("not an SPS NAL unit"));
    }
    read_sps(nal).ok_or_else(|| bad("truncated or out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avcc_record() -> Vec<u8> {
        let sps = [0x67, 0x42, 0xc0, 0x1e, 0xda];
        let pps = [0x68, 0xce, 0x3c, 0x80];
        let mut r = vec![1, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0, sps.len() as u8];
        r.extend_from_slice(&sps);
        r.extend_from_slice(&[1, 0, pps.len() as u8]);
        r.extend_from_slice(&pps);
        r
    }

    #[test]
    fn avcc_record_parses_and_rejects_garbage() {
        let config = AvcConfig::parse(&avcc_record()).unwrap();
        assert_eq!(config.profile_idc, 66);
        assert_eq!(config.nal_length_size, 4);
        assert_eq!(config.sps.len(), 1);
        assert_eq!(config.pps.len(), 1);
        assert!(AvcConfig::parse(&[1, 2, 3]).is_err());
        let mut truncated = avcc_record();
        truncated.truncate(10);
        assert!(AvcConfig::parse(&truncated).is_err());
    }

    #[test]
    fn idr_gets_parameter_sets_and_non_idr_does_not() {
        let config = AvcConfig::parse(&avcc_record()).unwrap();
        let mut w = AnnexbWriter::for_avcc(&config);
        let idr = [0, 0, 0, 3, 0x65, 0x88, 0x84];
        let (au, key) = w.convert(&idr).unwrap();
        assert!(key);
        let nals = split_annexb(&au);
        let types: Vec<u8> = nals.iter().map(|n| n[0] & 0x1f).collect();
        assert_eq!(types, vec![7, 8, 5]);
        let p = [0, 0, 0, 2, 0x41, 0x9a];
        let (au, key) = w.convert(&p).unwrap();
        assert!(!key);
        assert_eq!(&au[..], &[0, 0, 0, 1, 0x41, 0x9a]);
        assert!(
            w.convert(&[0, 0, 0, 9, 0x41]).is_err(),
            "overrun is an error"
        );
    }

    #[test]
    fn out_of_band_annexb_sets_precede_an_idr_that_lacks_them() {
        let extradata = [
            0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1e, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80,
        ];
        let mut w = AnnexbWriter::for_annexb_seeded(&extradata);
        let (au, key) = w.convert(&[0, 0, 0, 1, 0x65, 0x88, 0x84]).unwrap();
        assert!(key);
        let types: Vec<u8> = split_annexb(&au).iter().map(|n| n[0] & 0x1f).collect();
        assert_eq!(types, vec![7, 8, 5]);
        let mut unseeded = AnnexbWriter::for_annexb();
        let (au, _) = unseeded.convert(&[0, 0, 0, 1, 0x65, 0x88, 0x84]).unwrap();
        assert_eq!(split_annexb(&au).len(), 1, "nothing to add without sets");
    }
    // SPS NAL units written by libx264 (ffmpeg 5.1), emulation prevention bytes included.
    const SPS_BASELINE_640X360: [u8; 25] = [
        0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x2f, 0xf9, 0x70, 0x11, 0x00, 0x00, 0x03, 0x00,
        0x01, 0x00, 0x00, 0x03, 0x00, 0x3c, 0x0f, 0x16, 0x2e, 0x48,
    ];
    const SPS_HIGH_1920X1080: [u8; 27] = [
        0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5, 0xc0, 0x44, 0x00, 0x00,
        0x03, 0x00, 0x04, 0x00, 0x00, 0x03, 0x00, 0xf0, 0x3c, 0x60, 0xc6, 0x58,
    ];
    /// High 4:2:2, interlaced (`frame_mbs_only_flag` 0), 1280x720.
    const SPS_HIGH422_INTERLACED_1280X720: [u8; 27] = [
        0x67, 0x7a, 0x00, 0x20, 0xbc, 0xd9, 0x40, 0x50, 0x0b, 0xbf, 0x13, 0x80, 0x88, 0x00, 0x00,
        0x03, 0x00, 0x08, 0x00, 0x00, 0x03, 0x01, 0xe0, 0xf8, 0xb1, 0x6c, 0xb0,
    ];
    /// High 4:4:4 Predictive, 642x362 (cropped from 656x368 in single-sample units).
    const SPS_HIGH444_642X362: [u8; 26] = [
        0x67, 0xf4, 0x00, 0x1e, 0x91, 0x9b, 0x28, 0x14, 0x85, 0xfc, 0x7c, 0xf8, 0x08, 0x80, 0x00,
        0x00, 0x03, 0x00, 0x80, 0x00, 0x00, 0x1e, 0x07, 0x8b, 0x16, 0xcb,
    ];

    #[test]
    fn real_sps_sizes() {
        let cases: [(&[u8], u8, u8, u32, u32); 4] = [
            (&SPS_BASELINE_640X360, 66, 30, 640, 360),
            (&SPS_HIGH_1920X1080, 100, 40, 1920, 1080),
            (&SPS_HIGH422_INTERLACED_1280X720, 122, 32, 1280, 720),
            (&SPS_HIGH444_642X362, 244, 30, 642, 362),
        ];
        for (sps, profile_idc, level_idc, width, height) in cases {
            assert_eq!(
                parse_sps(sps).unwrap(),
                SpsInfo {
                    profile_idc,
                    level_idc,
                    width,
                    height
                }
            );
        }
    }

    #[test]
    fn emulation_prevention_is_removed() {
        assert_eq!(
            unescape_rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 3]
        );
    }

    /// Writes an RBSP bit by bit, for SPS the encoders here never write.
    #[derive(Default)]
    struct BitWriter {
        bits: Vec<bool>,
    }

    impl BitWriter {
        fn u(&mut self, n: u32, v: u32) {
            for i in (0..n).rev() {
                self.bits.push((v >> i) & 1 == 1);
            }
        }
        fn ue(&mut self, v: u32) {
            let v = u64::from(v) + 1;
            let len = 64 - v.leading_zeros();
            self.u(len - 1, 0);
            for i in (0..len).rev() {
                self.bits.push((v >> i) & 1 == 1);
            }
        }
        fn se(&mut self, v: i32) {
            self.ue(if v > 0 {
                2 * v as u32 - 1
            } else {
                2 * v.unsigned_abs()
            });
        }
        /// The NAL unit: header, payload with emulation prevention, stop bit.
        fn sps_nal(mut self) -> Vec<u8> {
            self.bits.push(true);
            while !self.bits.len().is_multiple_of(8) {
                self.bits.push(false);
            }
            let rbsp: Vec<u8> = self
                .bits
                .chunks(8)
                .map(|c| c.iter().fold(0u8, |acc, b| (acc << 1) | u8::from(*b)))
                .collect();
            let mut nal = vec![0x67];
            let mut zeros = 0;
            for b in rbsp {
                if zeros >= 2 && b <= 3 {
                    nal.push(3);
                    zeros = 0;
                }
                zeros = if b == 0 { zeros + 1 } else { 0 };
                nal.push(b);
            }
            nal
        }
    }

    #[test]
    fn scaling_lists_poc_type_1_and_monochrome_cropping() {
        let mut w = BitWriter::default();
        w.u(8, 100); // profile_idc: high
        w.u(8, 0);
        w.u(8, 31);
        w.ue(0); // sps id
        w.ue(0); // chroma_format_idc: monochrome
        w.ue(0);
        w.ue(0);
        w.u(1, 0);
        w.u(1, 1); // seq_scaling_matrix_present_flag
        for i in 0..8 {
            let present = i % 3 != 2;
            w.u(1, u32::from(present));
            if present {
                let size = if i < 6 { 16 } else { 64 };
                if i == 0 {
                    w.se(-8); // nextScale 0: use the default matrix, no more deltas
                } else {
                    for j in 0..size {
                        w.se(if j % 2 == 0 { 5 } else { -3 });
                    }
                }
            }
        }
        w.ue(0); // log2_max_frame_num_minus4
        w.ue(1); // pic_order_cnt_type 1
        w.u(1, 0);
        w.se(-2);
        w.se(1);
        w.ue(3);
        for v in [4, -5, 6] {
            w.se(v);
        }
        w.ue(4); // max_num_ref_frames
        w.u(1, 0);
        w.ue(79); // 1280 wide
        w.ue(44); // 720 high
        w.u(1, 1); // frame_mbs_only
        w.u(1, 1);
        w.u(1, 1); // frame_cropping_flag
        for crop in [3, 5, 0, 7] {
            w.ue(crop); // monochrome: 1-sample units
        }
        w.u(1, 0); // vui_parameters_present_flag
        let nal = w.sps_nal();
        assert_eq!(
            parse_sps(&nal).unwrap(),
            SpsInfo {
                profile_idc: 100,
                level_idc: 31,
                width: 1280 - 8,
                height: 720 - 7
            }
        );
    }

    #[test]
    fn broken_sps_is_an_error() {
        assert!(parse_sps(&[]).is_err());
        assert!(parse_sps(&[0x68, 0x42]).is_err(), "a PPS is not an SPS");
        // The fields that give the size end in byte 11 (cropping); anything shorter fails.
        for len in 1..11 {
            assert!(
                parse_sps(&SPS_HIGH_1920X1080[..len]).is_err(),
                "truncated at {len}"
            );
        }
        // 2^32 in exp-Golomb: 32 leading zeros.
        assert!(parse_sps(&[0x67, 0x42, 0, 0x1e, 0, 0, 0, 0, 0x80]).is_err());
    }
}
