//! MPEG-TS segments for the plain HLS variant (HLS version 3).
//!
//! Sans-IO: [`TsMuxer`] appends 188-byte transport packets (ISO 13818-1) to a buffer the
//! caller owns. One program: PMT on PID 0x1000, H.264 on 0x100 (stream type 0x1b), ADTS AAC
//! on 0x101 (stream type 0x0f). Each segment starts with a PAT and a PMT (RFC 8216 §3.2);
//! continuity counters run on across segments, so the segments of one muxer concatenate
//! into a valid stream. One access unit or AAC frame per PES packet.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::fmp4::{AAC_SAMPLE_RATES, AudioSpecificConfig};

const PACKET_LEN: usize = 188;
/// Bytes after the 4-byte packet header.
const PAYLOAD_LEN: usize = PACKET_LEN - 4;

const PID_PAT: u16 = 0;
const PID_PMT: u16 = 0x1000;
const PID_VIDEO: u16 = 0x100;
const PID_AUDIO: u16 = 0x101;
/// The PCR PID of a program with no elementary stream.
const PID_NULL: u16 = 0x1fff;

const STREAM_TYPE_H264: u8 = 0x1b;
const STREAM_TYPE_ADTS_AAC: u8 = 0x0f;
const STREAM_ID_VIDEO: u8 = 0xe0;
const STREAM_ID_AUDIO: u8 = 0xc0;
const PROGRAM_NUMBER: u16 = 1;

/// Timestamps are 33 bits (ISO 13818-1 §2.4.3.7).
const TIMESTAMP_MASK: i64 = (1 << 33) - 1;
/// How far the PCR runs ahead of the decode time of the unit it arrives with, 90 kHz:
/// the unit's bytes arrive before it is decoded.
const PCR_LEAD: i64 = 9_000;

/// An access unit delimiter (NAL type 9, any picture type).
const AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xf0];

/// Muxes one live channel's H.264 and AAC into MPEG-TS segments.
#[derive(Debug, Clone)]
pub struct TsMuxer {
    /// Whether the program has a video stream (listed in the PMT, carries the PCR).
    video: bool,
    /// The fixed part of every ADTS header (all but the frame length), when the program
    /// has an AAC stream.
    adts: Option<[u8; 7]>,
    /// Continuity counters, per PID, carried across segments.
    cc_pat: u8,
    cc_pmt: u8,
    cc_video: u8,
    cc_audio: u8,
}

impl TsMuxer {
    /// `audio` = the AudioSpecificConfig when there is an AAC track. A config that cannot
    /// become an ADTS header (shorter than 2 bytes, or an unlisted explicit sample rate)
    /// leaves the audio out: see [`TsMuxer::has_audio`].
    pub fn new(video: bool, audio: Option<Bytes>) -> TsMuxer {
        TsMuxer {
            video,
            adts: audio.and_then(|config| adts_header(&config, 0)),
            cc_pat: 0,
            cc_pmt: 0,
            cc_video: 0,
            cc_audio: 0,
        }
    }

    /// Whether the program carries audio ([`TsMuxer::write_audio`] writes nothing
    /// otherwise).
    pub fn has_audio(&self) -> bool {
        self.adts.is_some()
    }

    /// The PID that carries the PCR: video's, else audio's.
    fn pcr_pid(&self) -> u16 {
        match (self.video, self.adts.is_some()) {
            (true, _) => PID_VIDEO,
            (false, true) => PID_AUDIO,
            (false, false) => PID_NULL,
        }
    }

    /// Starts a segment: writes the PAT and the PMT (each segment must start with them).
    /// Continuity counters carry on from the previous segment.
    pub fn begin_segment(&mut self, out: &mut BytesMut) {
        let mut pat = Vec::with_capacity(16);
        pat.put_u16(PROGRAM_NUMBER);
        pat.put_u16(0xe000 | PID_PMT); // reserved bits, program_map_PID
        let cc = next(&mut self.cc_pat);
        write_section(out, PID_PAT, cc, 0x00, 1, &pat);

        let mut pmt = Vec::with_capacity(32);
        pmt.put_u16(0xe000 | self.pcr_pid()); // reserved bits, PCR_PID
        pmt.put_u16(0xf000); // reserved bits, program_info_length 0
        let streams = [
            self.video.then_some((STREAM_TYPE_H264, PID_VIDEO)),
            self.adts.map(|_| (STREAM_TYPE_ADTS_AAC, PID_AUDIO)),
        ];
        for (stream_type, pid) in streams.into_iter().flatten() {
            pmt.put_u8(stream_type);
            pmt.put_u16(0xe000 | pid); // reserved bits, elementary_PID
            pmt.put_u16(0xf000); // reserved bits, ES_info_length 0
        }
        let cc = next(&mut self.cc_pmt);
        write_section(out, PID_PMT, cc, 0x02, PROGRAM_NUMBER, &pmt);
    }

    /// One H.264 access unit (Annex-B, SPS/PPS already in-band before IDRs); `pts`/`dts` on
    /// a 90 kHz clock (wrapped to 33 bits). Prepends an AUD NAL unit if the unit does not
    /// start with one. PES with PTS and DTS (PTS only when equal) and no length; the PCR
    /// (when video carries it) and, on keyframes, the random access indicator in the first
    /// packet's adaptation field.
    pub fn write_video(
        &mut self,
        out: &mut BytesMut,
        pts: i64,
        dts: i64,
        keyframe: bool,
        annexb: &[u8],
    ) {
        let mut header = Vec::with_capacity(19 + AUD.len());
        put_pes_header(
            &mut header,
            STREAM_ID_VIDEO,
            0,
            pts,
            (pts != dts).then_some(dts),
        );
        if first_nal_type(annexb) != Some(9) {
            header.extend_from_slice(&AUD);
        }
        let pcr = (self.pcr_pid() == PID_VIDEO).then_some(dts);
        let cc = &mut self.cc_video;
        write_pes(out, PID_VIDEO, cc, &header, annexb, pcr, keyframe);
    }

    /// One raw AAC frame (no ADTS header): written behind a 7-byte ADTS header made from the
    /// config; `pts` on 90 kHz. Nothing is written when the program has no audio.
    pub fn write_audio(&mut self, out: &mut BytesMut, pts: i64, raw: &[u8]) {
        let Some(mut adts) = self.adts else {
            return;
        };
        set_adts_frame_length(&mut adts, raw.len());
        // PES_packet_length counts from the byte after it: 3 header bytes, the PTS, the data.
        let pes_len = 3 + 5 + adts.len() + raw.len();
        let mut header = Vec::with_capacity(14 + adts.len());
        put_pes_header(
            &mut header,
            STREAM_ID_AUDIO,
            u16::try_from(pes_len).unwrap_or(0),
            pts,
            None,
        );
        header.extend_from_slice(&adts);
        let pcr = (self.pcr_pid() == PID_AUDIO).then_some(pts);
        write_pes(out, PID_AUDIO, &mut self.cc_audio, &header, raw, pcr, false);
    }
}

/// The counter's value for this packet; advances it (4 bits).
fn next(cc: &mut u8) -> u8 {
    let now = *cc;
    *cc = (now + 1) & 0x0f;
    now
}

/// The type of the first NAL unit of an Annex-B access unit.
fn first_nal_type(annexb: &[u8]) -> Option<u8> {
    let start = annexb.windows(3).position(|w| w == [0, 0, 1])?;
    annexb.get(start + 3).map(|b| b & 0x1f)
}

/// The 7-byte ADTS header (ISO 14496-3 §1.A.2.2, no CRC) of a raw frame of `raw_len` bytes
/// of the AAC stream the AudioSpecificConfig `config` describes; `None` when ADTS cannot
/// express it. ADTS profiles are AAC Main, LC, SSR and LTP; SBR and PS streams are written
/// as LC at the core rate (implicit signalling).
pub fn adts_header(config: &[u8], raw_len: usize) -> Option<[u8; 7]> {
    let asc = AudioSpecificConfig::parse(config)?;
    let profile = match asc.object_type {
        1..=4 => asc.object_type - 1,
        _ => 1,
    };
    let frequency_index = match asc.frequency_index {
        15 => AAC_SAMPLE_RATES
            .iter()
            .position(|&r| r == asc.sample_rate)? as u8,
        i => i,
    };
    let channels = asc.channel_config & 0x07;
    let mut header = [
        0xff,
        0xf1, // MPEG-4, layer 0, protection_absent
        (profile << 6) | (frequency_index << 2) | (channels >> 2),
        (channels & 0x03) << 6,
        0,
        0x1f, // buffer fullness 0x7ff (variable rate), high bits
        0xfc, // its low bits; one raw data block
    ];
    set_adts_frame_length(&mut header, raw_len);
    Some(header)
}

/// Puts the 13-bit `aac_frame_length` (header included) into an ADTS header.
fn set_adts_frame_length(header: &mut [u8; 7], raw_len: usize) {
    let len = (raw_len + 7) & 0x1fff;
    header[3] = (header[3] & 0xfc) | (len >> 11) as u8;
    header[4] = (len >> 3) as u8;
    header[5] = (header[5] & 0x1f) | ((len & 0x07) << 5) as u8;
}

/// A PES header (ISO 13818-1 §2.4.3.6) with a PTS and, when given, a DTS.
fn put_pes_header(out: &mut Vec<u8>, stream_id: u8, length: u16, pts: i64, dts: Option<i64>) {
    out.extend_from_slice(&[0, 0, 1, stream_id]);
    out.put_u16(length);
    out.put_u8(0x84); // '10', not scrambled, data_alignment_indicator
    match dts {
        None => {
            out.put_u8(0x80); // PTS only
            out.put_u8(5);
            put_timestamp(out, 0b0010, pts);
        }
        Some(dts) => {
            out.put_u8(0xc0); // PTS and DTS
            out.put_u8(10);
            put_timestamp(out, 0b0011, pts);
            put_timestamp(out, 0b0001, dts);
        }
    }
}

/// A 33-bit timestamp in the 5-byte PES layout: 4-bit prefix, then 3 + 15 + 15 bits each
/// followed by a marker bit.
fn put_timestamp(out: &mut Vec<u8>, prefix: u8, t: i64) {
    let t = (t & TIMESTAMP_MASK) as u64;
    out.put_u8((prefix << 4) | ((t >> 29) & 0x0e) as u8 | 1);
    out.put_u8((t >> 22) as u8);
    out.put_u8(((t >> 14) & 0xfe) as u8 | 1);
    out.put_u8((t >> 7) as u8);
    out.put_u8(((t << 1) & 0xfe) as u8 | 1);
}

/// One PES packet, `header` then `data`, in as many transport packets as it takes: the
/// first with `payload_unit_start_indicator` (and, when given, the PCR at `pcr_dts` minus
/// [`PCR_LEAD`] and the random access indicator in its adaptation field); the last filled
/// up with adaptation field stuffing.
fn write_pes(
    out: &mut BytesMut,
    pid: u16,
    cc: &mut u8,
    header: &[u8],
    data: &[u8],
    pcr_dts: Option<i64>,
    random_access: bool,
) {
    let mut payload = header.chain(data);
    let total = payload.remaining();
    out.reserve(total.div_ceil(PAYLOAD_LEN - 8) * PACKET_LEN);
    let mut first = true;
    while payload.has_remaining() {
        let pcr = pcr_dts.filter(|_| first);
        let flags = (if first && random_access { 0x40 } else { 0 })
            | (if pcr.is_some() { 0x10 } else { 0 });
        // Length byte and flags byte, then the PCR's 6 bytes.
        let fields_len = match (flags, pcr) {
            (0, _) => 0,
            (_, Some(_)) => 8,
            (_, None) => 2,
        };
        let chunk = payload.remaining().min(PAYLOAD_LEN - fields_len);
        // The whole adaptation field, its length byte included; beyond the fields, stuffing.
        let field_len = PAYLOAD_LEN - chunk;
        out.put_u8(0x47);
        out.put_u16((if first { 0x4000 } else { 0 }) | pid);
        out.put_u8((if field_len > 0 { 0x30 } else { 0x10 }) | next(cc));
        if field_len > 0 {
            out.put_u8((field_len - 1) as u8);
            if field_len > 1 {
                out.put_u8(flags);
                if let Some(dts) = pcr {
                    put_pcr(out, dts - PCR_LEAD);
                }
                out.put_bytes(0xff, field_len - fields_len.max(2));
            }
        }
        out.put((&mut payload).take(chunk));
        first = false;
    }
}

/// The 6-byte PCR: a 33-bit 90 kHz base, 6 reserved bits, a 9-bit 27 MHz extension (0).
fn put_pcr(out: &mut BytesMut, t: i64) {
    let base = (t & TIMESTAMP_MASK) as u64;
    out.put_u32((base >> 1) as u32);
    out.put_u8((((base & 1) << 7) as u8) | 0x7e);
    out.put_u8(0);
}

/// A PSI section (PAT or PMT) with the long syntax, in one transport packet: table id,
/// `id` (transport_stream_id or program_number), version 0, `body`, CRC.
fn write_section(out: &mut BytesMut, pid: u16, cc: u8, table_id: u8, id: u16, body: &[u8]) {
    let mut section = Vec::with_capacity(12 + body.len());
    section.put_u8(table_id);
    // section_syntax_indicator, '0', reserved, section_length (after this field, CRC included).
    section.put_u16(0xb000 | (5 + body.len() + 4) as u16);
    section.put_u16(id);
    section.put_u8(0xc1); // reserved, version 0, current_next_indicator
    section.put_u8(0); // section_number
    section.put_u8(0); // last_section_number
    section.extend_from_slice(body);
    let crc = crc32_mpeg2(&section);
    section.put_u32(crc);
    out.put_u8(0x47);
    out.put_u16(0x4000 | pid); // payload_unit_start_indicator
    out.put_u8(0x10 | cc); // payload only
    out.put_u8(0); // pointer_field
    out.put_slice(&section);
    out.put_bytes(0xff, PAYLOAD_LEN - 1 - section.len());
}

/// CRC-32/MPEG-2: polynomial 0x04c11db7, initial value all ones, no reflection, no final
/// XOR (ISO 13818-1 Annex A).
fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &byte in data {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::super::test_media::{assert_whole_clip, csv_rows, media, probe, run, segments};
    use super::*;

    /// One transport packet as the checks below see it.
    struct Packet<'a> {
        pid: u16,
        unit_start: bool,
        /// The adaptation field after its length byte, empty when there is none.
        adaptation: &'a [u8],
        payload: &'a [u8],
    }

    /// Splits `ts` into packets, checking the sync bytes and that each PID's continuity
    /// counter goes up by one on every packet with a payload.
    fn packets(ts: &[u8]) -> Vec<Packet<'_>> {
        assert_eq!(ts.len() % PACKET_LEN, 0, "whole packets");
        let mut counters = std::collections::HashMap::new();
        ts.chunks(PACKET_LEN)
            .enumerate()
            .map(|(i, p)| {
                assert_eq!(p[0], 0x47, "sync byte of packet {i}");
                let pid = u16::from_be_bytes([p[1], p[2]]) & 0x1fff;
                let control = p[3] >> 4;
                let cc = p[3] & 0x0f;
                if control & 1 == 1
                    && let Some(previous) = counters.insert(pid, cc)
                {
                    assert_eq!(cc, (previous + 1) & 0x0f, "continuity of PID {pid} at {i}");
                }
                let (adaptation, payload) = if control & 2 == 2 {
                    let len = usize::from(p[4]);
                    (&p[5..5 + len], &p[5 + len..])
                } else {
                    (&p[4..4], &p[4..])
                };
                Packet {
                    pid,
                    unit_start: p[1] & 0x40 != 0,
                    adaptation,
                    payload,
                }
            })
            .collect()
    }

    #[test]
    fn crc_of_the_check_string() {
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
    }

    #[test]
    fn adts_header_for_aac_lc_48k_stereo() {
        assert_eq!(
            adts_header(&[0x11, 0x90], 100),
            Some([0xff, 0xf1, 0x4c, 0x80, 0x0d, 0x7f, 0xfc])
        );
        let media = media();
        assert_eq!(
            adts_header(&media.audio_config, media.audio[0].data.len()),
            Some(media.first_adts_header),
            "the header FFmpeg's encoder wrote for the same frame"
        );
        assert_eq!(adts_header(&[0x11], 100), None);
        let muxer = TsMuxer::new(true, Some(Bytes::from_static(&[0x11])));
        assert!(!muxer.has_audio(), "an unreadable config leaves audio out");
    }

    #[test]
    fn two_segments_decode_cleanly_with_the_muxed_timestamps() {
        let media = media();
        let mut muxer = TsMuxer::new(true, Some(media.audio_config.clone()));
        let mut out = BytesMut::new();
        let mut starts = Vec::new();
        for (video, audio) in segments(media, 2) {
            starts.push(out.len());
            muxer.begin_segment(&mut out);
            let (mut v, mut a) = (video.start, audio.start);
            // Interleaved by decode time.
            while v < video.end || a < audio.end {
                let video_next =
                    v < video.end && (a == audio.end || media.video[v].dts <= media.audio[a].dts);
                if video_next {
                    let u = &media.video[v];
                    muxer.write_video(&mut out, u.pts, u.dts, u.keyframe, &u.data);
                    v += 1;
                } else {
                    let u = &media.audio[a];
                    muxer.write_audio(&mut out, u.pts, &u.data);
                    a += 1;
                }
            }
        }
        assert_eq!(starts.len(), 2);

        let packets = packets(&out);
        for start in &starts {
            let i = start / PACKET_LEN;
            assert_eq!((packets[i].pid, packets[i + 1].pid), (PID_PAT, PID_PMT));
            for table in &packets[i..i + 2] {
                // After the pointer field: 3 bytes, then section_length bytes ending in the
                // CRC, over which the CRC of the whole section is 0.
                let length =
                    usize::from(u16::from_be_bytes([table.payload[2], table.payload[3]]) & 0xfff);
                assert_eq!(crc32_mpeg2(&table.payload[1..4 + length]), 0, "section CRC");
            }
        }
        let video_starts: Vec<&Packet> = packets
            .iter()
            .filter(|p| p.pid == PID_VIDEO && p.unit_start)
            .collect();
        assert_eq!(video_starts.len(), media.video.len());
        for (p, unit) in video_starts.iter().zip(&media.video) {
            assert_eq!(&p.payload[..4], &[0, 0, 1, 0xe0]);
            let header_len = usize::from(p.payload[8]);
            assert_eq!(&p.payload[9 + header_len..][..6], &AUD, "an AUD first");
            assert_eq!(p.adaptation[0] & 0x10, 0x10, "PCR on the video PID");
            assert_eq!(p.adaptation[0] & 0x40 != 0, unit.keyframe, "random access");
        }

        assert_whole_clip(&out, "out.ts");
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.ts");
        std::fs::write(&path, &out).expect("write");
        let (csv, errors) = run(
            "ffprobe",
            &[
                "-v",
                "error",
                "-select_streams",
                "a",
                "-show_entries",
                "packet=pts",
                "-of",
                "csv=p=0",
                path.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(errors, "");
        let audio_pts: Vec<i64> = csv_rows(&csv).iter().map(|row| row[0]).collect();
        let muxed: Vec<i64> = media.audio.iter().map(|u| u.pts).collect();
        assert_eq!(audio_pts, muxed, "audio pts as muxed");
        // FFmpeg reports continuity errors only at debug level.
        let (_, debug) = run(
            "ffprobe",
            &[
                "-v",
                "debug",
                "-show_entries",
                "packet=pts",
                path.to_str().expect("utf-8"),
            ],
        );
        assert!(debug.contains("mpegts"), "debug output");
        assert!(!debug.contains("Continuity check failed"));
    }

    #[test]
    fn audio_only_program_carries_the_pcr_on_audio() {
        let media = media();
        let mut muxer = TsMuxer::new(false, Some(media.audio_config.clone()));
        let mut out = BytesMut::new();
        muxer.begin_segment(&mut out);
        // Timestamps past the 33-bit wrap come out wrapped.
        let wrap = 1i64 << 33;
        for u in &media.audio[..50] {
            muxer.write_audio(&mut out, u.pts + wrap, &u.data);
        }
        let packets = packets(&out);
        let pmt = packets[1].payload;
        // pointer_field, then the section: PCR_PID at bytes 8-9 of the section.
        assert_eq!(u16::from_be_bytes([pmt[9], pmt[10]]) & 0x1fff, PID_AUDIO);
        assert!(packets.iter().all(|p| p.pid != PID_VIDEO));
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("audio.ts");
        std::fs::write(&path, &out).expect("write");
        let probe = probe(&path, "a");
        assert_eq!(probe.errors, "");
        assert_eq!(probe.streams, vec![("aac".to_string(), 0, 0, 50)]);
        assert_eq!(probe.packets[0].0, media.audio[0].pts);
    }

    #[test]
    fn stuffing_fills_the_last_packet_whatever_the_size() {
        let mut muxer = TsMuxer::new(true, None);
        let mut out = BytesMut::new();
        // The first packet holds 162 bytes of a unit (184 less the 8-byte adaptation field
        // with the PCR and the 14-byte PES header), the next 184: sizes around those edges,
        // 345 leaving 183 bytes for the second packet (a 1-byte adaptation field).
        let sizes = [6, 150, 161, 162, 163, 345, 346, 347, 1000];
        for (i, &len) in sizes.iter().enumerate() {
            let mut au = AUD.to_vec();
            au.resize(len, i as u8);
            muxer.write_video(&mut out, 9000, 9000, i % 2 == 0, &au);
        }
        let mut units: Vec<Vec<u8>> = Vec::new();
        for p in packets(&out) {
            assert_eq!(p.pid, PID_VIDEO);
            if p.unit_start {
                units.push(Vec::new());
            }
            units
                .last_mut()
                .expect("starts with a unit")
                .extend_from_slice(p.payload);
        }
        assert_eq!(units.len(), sizes.len());
        for (i, (pes, &len)) in units.iter().zip(&sizes).enumerate() {
            assert_eq!(pes[7], 0x80, "PTS only when it equals the DTS");
            let au = &pes[9 + usize::from(pes[8])..];
            assert_eq!(au.len(), len, "the unit's bytes and nothing else");
            assert_eq!(&au[..6], &AUD, "no second AUD");
            assert!(au[6..].iter().all(|&b| b == i as u8));
        }
    }
}
