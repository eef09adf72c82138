//! ISO BMFF (fMP4/CMAF) init segments and fragments for live HLS.
//!
//! Sans-IO: every function takes media in and hands bytes back. An init segment
//! ([`init_segment`]) describes the tracks once (ISO 14496-12 `ftyp` + `moov`, with the
//! H.264 `avcC` of ISO 14496-15 and the AAC `esds` of ISO 14496-14); each [`fragment`] is one
//! `moof` + `mdat` with one track run per track. Video is track [`VIDEO_TRACK`] on a 90 kHz
//! clock, audio track [`AUDIO_TRACK`] on its sample rate.
//!
//! A fragment's sample durations are the caller's: a sample lasts until the next one's
//! decode time, so a live caller holds back the newest unit of each track until the next
//! arrives (or uses the nominal frame duration).

use bytes::{BufMut, Bytes, BytesMut};

use crate::media::sps::{read_sps, unescape_rbsp};
use crate::transcode::h264::split_annexb;

/// The video track's id; its clock is [`VIDEO_TIMESCALE`].
pub const VIDEO_TRACK: u32 = 1;
/// The audio track's id; its clock is the sample rate.
pub const AUDIO_TRACK: u32 = 2;
/// The video track's clock, as [`crate::media::AccessUnit`] timestamps video.
pub const VIDEO_TIMESCALE: u32 = 90_000;

/// Sampling frequencies by `samplingFrequencyIndex` (ISO 14496-3 §1.6.3.4).
pub const AAC_SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;

/// H.264 parameters of the video track (from the SPS/PPS before the first IDR).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoConfig {
    /// The sequence parameter set NAL unit, header byte included, no start code.
    pub sps: Bytes,
    /// The picture parameter set NAL unit, header byte included, no start code.
    pub pps: Bytes,
    /// Displayed width (`tkhd` and the sample entry).
    pub width: u16,
    /// Displayed height.
    pub height: u16,
}

impl VideoConfig {
    /// The configuration an Annex-B access unit carries (a keyframe with its SPS and PPS
    /// in-band); `None` when either set is missing or the SPS is unreadable.
    pub fn from_access_unit(annexb: &[u8]) -> Option<VideoConfig> {
        let (sps, pps) = parameter_sets(annexb)?;
        let info = read_sps(&sps)?;
        Some(VideoConfig {
            width: info.width.try_into().ok()?,
            height: info.height.try_into().ok()?,
            sps,
            pps,
        })
    }
}

/// AAC-LC parameters (AudioSpecificConfig) of the audio track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioConfig {
    /// The AudioSpecificConfig (ISO 14496-3 §1.6.2.1), as
    /// [`crate::media::Track::OriginalAac`] carries it.
    pub config: Bytes,
    /// Samples per second: the track's clock.
    pub sample_rate: u32,
    /// Channel count for the sample entry.
    pub channels: u16,
}

impl AudioConfig {
    /// Reads the sample rate and channel count from an AudioSpecificConfig; `None` when it
    /// is too short or names no rate.
    pub fn from_audio_specific_config(config: Bytes) -> Option<AudioConfig> {
        let asc = AudioSpecificConfig::parse(&config)?;
        Some(AudioConfig {
            sample_rate: asc.sample_rate,
            // Channel configuration 7 is 7.1 (8 channels); 0 means a PCE, stereo is a guess.
            channels: match asc.channel_config {
                0 => 2,
                7 => 8,
                c => u16::from(c),
            },
            config,
        })
    }
}

/// The leading fields of an AudioSpecificConfig.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// `audioObjectType` (2 = AAC-LC, 5 = SBR, 29 = PS).
    pub object_type: u8,
    /// `samplingFrequencyIndex`, 15 when the rate is given explicitly.
    pub frequency_index: u8,
    /// The sample rate in Hz.
    pub sample_rate: u32,
    /// `channelConfiguration` (0 = in a program config element, 1-6 channels, 7 = 7.1).
    pub channel_config: u8,
}

impl AudioSpecificConfig {
    /// Parses the object type, sampling frequency and channel configuration.
    pub fn parse(config: &[u8]) -> Option<AudioSpecificConfig> {
        let bits = |from: usize, n: usize| -> Option<u32> {
            (from..from + n).try_fold(0u32, |acc, i| {
                let byte = *config.get(i / 8)?;
                Some((acc << 1) | u32::from((byte >> (7 - i % 8)) & 1))
            })
        };
        let mut at = 5;
        let mut object_type = bits(0, 5)?;
        if object_type == 31 {
            object_type = 32 + bits(at, 6)?;
            at += 6;
        }
        let frequency_index = bits(at, 4)?;
        at += 4;
        let sample_rate = if frequency_index == 15 {
            let rate = bits(at, 24)?;
            at += 24;
            rate
        } else {
            *AAC_SAMPLE_RATES.get(frequency_index as usize)?
        };
        let channel_config = bits(at, 4)?;
        Some(AudioSpecificConfig {
            object_type: object_type as u8,
            frequency_index: frequency_index as u8,
            sample_rate,
            channel_config: channel_config as u8,
        })
    }
}

/// Writes a box: size placeholder and type, then what `body` writes, then the size.
fn write_box(out: &mut BytesMut, kind: &[u8; 4], body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u32(0);
    out.put_slice(kind);
    body(out);
    // Only `mdat` can grow past 4 GiB, and `fragment` writes that one itself.
    let size = u32::try_from(out.len() - start).unwrap_or(u32::MAX);
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

/// Writes a full box: a box whose body starts with a version byte and 24 bits of flags.
fn write_full_box(
    out: &mut BytesMut,
    kind: &[u8; 4],
    version: u8,
    flags: u32,
    body: impl FnOnce(&mut BytesMut),
) {
    write_box(out, kind, |out| {
        out.put_u32((u32::from(version) << 24) | (flags & 0x00ff_ffff));
        body(out);
    });
}

/// The identity transformation matrix of `mvhd` and `tkhd`.
fn put_matrix(out: &mut BytesMut) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        out.put_u32(v);
    }
}

/// The init segment: ftyp (major brand iso6; iso6, cmfc, mp41 compatible, as Apple's,
/// hls.js's and FFmpeg's fMP4 readers accept) + moov with mvhd, one trak per present track (tkhd, mdia/mdhd/hdlr/minf with vmhd|smhd,
/// dinf/dref, stbl with avc1+avcC (or mp4a+esds) and empty stts/stsc/stsz/stco), and mvex
/// with a trex per track.
pub fn init_segment(video: Option<&VideoConfig>, audio: Option<&AudioConfig>) -> Bytes {
    let mut out = BytesMut::with_capacity(1024);
    write_box(&mut out, b"ftyp", |out| {
        out.put_slice(b"iso6");
        out.put_u32(0); // minor_version
        for brand in [b"iso6", b"cmfc", b"mp41"] {
            out.put_slice(brand);
        }
    });
    write_box(&mut out, b"moov", |out| {
        write_full_box(out, b"mvhd", 0, 0, |out| {
            out.put_u32(0); // creation_time
            out.put_u32(0); // modification_time
            out.put_u32(1000); // timescale
            out.put_u32(0); // duration: unknown (fragmented)
            out.put_u32(0x0001_0000); // rate 1.0
            out.put_u16(0x0100); // volume 1.0
            out.put_bytes(0, 10); // reserved
            put_matrix(out);
            out.put_bytes(0, 24); // pre_defined
            out.put_u32(AUDIO_TRACK + 1); // next_track_ID
        });
        if let Some(video) = video {
            write_trak(out, &TrackKind::Video(video));
        }
        if let Some(audio) = audio {
            write_trak(out, &TrackKind::Audio(audio));
        }
        write_box(out, b"mvex", |out| {
            let ids = [video.map(|_| VIDEO_TRACK), audio.map(|_| AUDIO_TRACK)];
            for id in ids.into_iter().flatten() {
                write_full_box(out, b"trex", 0, 0, |out| {
                    out.put_u32(id);
                    out.put_u32(1); // default_sample_description_index
                    out.put_u32(0); // default_sample_duration
                    out.put_u32(0); // default_sample_size
                    out.put_u32(0); // default_sample_flags
                });
            }
        });
    });
    out.freeze()
}

enum TrackKind<'a> {
    Video(&'a VideoConfig),
    Audio(&'a AudioConfig),
}

fn write_trak(out: &mut BytesMut, track: &TrackKind) {
    let (id, timescale, handler, name): (u32, u32, &[u8; 4], &[u8]) = match track {
        TrackKind::Video(_) => (VIDEO_TRACK, VIDEO_TIMESCALE, b"vide", b"VideoHandler\0"),
        TrackKind::Audio(a) => (AUDIO_TRACK, a.sample_rate, b"soun", b"SoundHandler\0"),
    };
    write_box(out, b"trak", |out| {
        // Flags: track enabled, in movie.
        write_full_box(out, b"tkhd", 0, 0x3, |out| {
            out.put_u32(0); // creation_time
            out.put_u32(0); // modification_time
            out.put_u32(id);
            out.put_u32(0); // reserved
            out.put_u32(0); // duration
            out.put_bytes(0, 8); // reserved
            out.put_u16(0); // layer
            out.put_u16(0); // alternate_group
            let (volume, width, height) = match track {
                TrackKind::Video(v) => (0, v.width, v.height),
                TrackKind::Audio(_) => (0x0100, 0, 0),
            };
            out.put_u16(volume);
            out.put_u16(0); // reserved
            put_matrix(out);
            out.put_u32(u32::from(width) << 16); // 16.16 fixed point
            out.put_u32(u32::from(height) << 16);
        });
        write_box(out, b"mdia", |out| {
            write_full_box(out, b"mdhd", 0, 0, |out| {
                out.put_u32(0); // creation_time
                out.put_u32(0); // modification_time
                out.put_u32(timescale);
                out.put_u32(0); // duration
                out.put_u16(0x55c4); // language "und", packed ISO 639-2/T
                out.put_u16(0); // pre_defined
            });
            write_full_box(out, b"hdlr", 0, 0, |out| {
                out.put_u32(0); // pre_defined
                out.put_slice(handler);
                out.put_bytes(0, 12); // reserved
                out.put_slice(name);
            });
            write_box(out, b"minf", |out| {
                match track {
                    TrackKind::Video(_) => write_full_box(out, b"vmhd", 0, 1, |out| {
                        out.put_u16(0); // graphicsmode: copy
                        out.put_bytes(0, 6); // opcolor
                    }),
                    TrackKind::Audio(_) => write_full_box(out, b"smhd", 0, 0, |out| {
                        out.put_u16(0); // balance
                        out.put_u16(0); // reserved
                    }),
                }
                write_box(out, b"dinf", |out| {
                    write_full_box(out, b"dref", 0, 0, |out| {
                        out.put_u32(1); // entry_count
                        // Flag 1: the media is in this file.
                        write_full_box(out, b"url ", 0, 1, |_| {});
                    });
                });
                write_box(out, b"stbl", |out| {
                    write_full_box(out, b"stsd", 0, 0, |out| {
                        out.put_u32(1); // entry_count
                        match track {
                            TrackKind::Video(v) => write_avc1(out, v),
                            TrackKind::Audio(a) => write_mp4a(out, a),
                        }
                    });
                    // The samples are all in fragments: empty tables.
                    write_full_box(out, b"stts", 0, 0, |out| out.put_u32(0));
                    write_full_box(out, b"stsc", 0, 0, |out| out.put_u32(0));
                    write_full_box(out, b"stsz", 0, 0, |out| {
                        out.put_u32(0); // sample_size
                        out.put_u32(0); // sample_count
                    });
                    write_full_box(out, b"stco", 0, 0, |out| out.put_u32(0));
                });
            });
        });
    });
}

/// The `avc1` sample entry with its `avcC` (ISO 14496-15 §5.3.3, §5.3.4).
fn write_avc1(out: &mut BytesMut, video: &VideoConfig) {
    write_box(out, b"avc1", |out| {
        out.put_bytes(0, 6); // reserved
        out.put_u16(1); // data_reference_index
        out.put_u16(0); // pre_defined
        out.put_u16(0); // reserved
        out.put_bytes(0, 12); // pre_defined
        out.put_u16(video.width);
        out.put_u16(video.height);
        out.put_u32(0x0048_0000); // horizresolution 72 dpi
        out.put_u32(0x0048_0000); // vertresolution 72 dpi
        out.put_u32(0); // reserved
        out.put_u16(1); // frame_count
        out.put_bytes(0, 32); // compressorname
        out.put_u16(0x0018); // depth
        out.put_i16(-1); // pre_defined
        write_box(out, b"avcC", |out| {
            let sps = &video.sps;
            let field = |i: usize| sps.get(i).copied().unwrap_or(0);
            out.put_u8(1); // configurationVersion
            out.put_u8(field(1)); // AVCProfileIndication
            out.put_u8(field(2)); // profile_compatibility
            out.put_u8(field(3)); // AVCLevelIndication
            out.put_u8(0xfc | 3); // lengthSizeMinusOne: 4-byte NAL lengths
            out.put_u8(0xe0 | 1); // numOfSequenceParameterSets
            out.put_u16(sps.len() as u16);
            out.put_slice(sps);
            out.put_u8(1); // numOfPictureParameterSets
            out.put_u16(video.pps.len() as u16);
            out.put_slice(&video.pps);
            // The high profiles add the chroma format and bit depths (§5.3.3.1.2).
            if matches!(field(1), 100 | 110 | 122 | 144)
                && let Some((chroma, luma_depth, chroma_depth)) = sps_chroma_fields(sps)
            {
                out.put_u8(0xfc | chroma);
                out.put_u8(0xf8 | luma_depth);
                out.put_u8(0xf8 | chroma_depth);
                out.put_u8(0); // numOfSequenceParameterSetExt
            }
        });
    });
}

/// `chroma_format_idc`, `bit_depth_luma_minus8` and `bit_depth_chroma_minus8` of a
/// high-profile SPS (ISO 14496-10 §7.3.2.1.1), which follow `seq_parameter_set_id`.
fn sps_chroma_fields(sps: &[u8]) -> Option<(u8, u8, u8)> {
    let rbsp = unescape_rbsp(sps.get(1..)?);
    let mut bit = 24; // after profile_idc, the constraint flags and level_idc
    let mut ue = || -> Option<u32> {
        let mut zeros = 0;
        loop {
            let set = (rbsp.get(bit / 8)? >> (7 - bit % 8)) & 1 == 1;
            bit += 1;
            if set {
                break;
            }
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let mut rest = 0u64;
        for _ in 0..zeros {
            rest = (rest << 1) | u64::from((rbsp.get(bit / 8)? >> (7 - bit % 8)) & 1);
            bit += 1;
        }
        u32::try_from((1u64 << zeros) - 1 + rest).ok()
    };
    ue()?; // seq_parameter_set_id
    let chroma = ue()?;
    let luma_depth = ue()?;
    let chroma_depth = ue()?;
    (chroma <= 3 && luma_depth <= 6 && chroma_depth <= 6).then_some((
        chroma as u8,
        luma_depth as u8,
        chroma_depth as u8,
    ))
}

/// The `mp4a` sample entry with its `esds` (ISO 14496-14 §5.6, ISO 14496-1 §7.2.6).
fn write_mp4a(out: &mut BytesMut, audio: &AudioConfig) {
    write_box(out, b"mp4a", |out| {
        out.put_bytes(0, 6); // reserved
        out.put_u16(1); // data_reference_index
        out.put_bytes(0, 8); // reserved
        out.put_u16(audio.channels);
        out.put_u16(16); // samplesize
        out.put_u16(0); // pre_defined
        out.put_u16(0); // reserved
        // 16.16 fixed point; rates above 65535 Hz do not fit and are left to the esds.
        out.put_u32(if audio.sample_rate <= 0xffff {
            audio.sample_rate << 16
        } else {
            0
        });
        write_full_box(out, b"esds", 0, 0, |out| {
            let mut decoder_config = BytesMut::with_capacity(32);
            decoder_config.put_u8(0x40); // objectTypeIndication: MPEG-4 audio
            decoder_config.put_u8((0x05 << 2) | 1); // streamType audio, reserved bit
            decoder_config.put_uint(0, 3); // bufferSizeDB
            decoder_config.put_u32(0); // maxBitrate
            decoder_config.put_u32(0); // avgBitrate
            put_descriptor(&mut decoder_config, 0x05, &audio.config); // DecoderSpecificInfo
            let mut es = BytesMut::with_capacity(48);
            es.put_u16(0); // ES_ID
            es.put_u8(0); // no dependency, URL or OCR stream
            put_descriptor(&mut es, 0x04, &decoder_config); // DecoderConfigDescriptor
            put_descriptor(&mut es, 0x06, &[0x02]); // SLConfigDescriptor: predefined MP4
            put_descriptor(out, 0x03, &es); // ES_Descriptor
        });
    });
}

/// An ISO 14496-1 descriptor: tag, expandable size (7 bits a byte), body.
fn put_descriptor(out: &mut BytesMut, tag: u8, body: &[u8]) {
    out.put_u8(tag);
    let len = body.len();
    for shift in [21, 14, 7] {
        if len >> shift > 0 {
            out.put_u8(0x80 | ((len >> shift) & 0x7f) as u8);
        }
    }
    out.put_u8((len & 0x7f) as u8);
    out.put_slice(body);
}

/// One sample of a track run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Until the next sample's decode time, in the track's clock.
    pub duration: u32,
    /// Presentation minus decode time, in the track's clock (B-frames make it differ).
    pub cts_offset: i32,
    /// A sync sample (an IDR; every audio sample).
    pub keyframe: bool,
    /// The coded sample: for video, 4-byte length-prefixed NAL units ([`annexb_to_avcc`]);
    /// for AAC, the raw frame.
    pub data: Bytes,
}

/// The samples of one track in a fragment.
#[derive(Debug, Clone, Copy)]
pub struct TrackRun<'a> {
    /// [`VIDEO_TRACK`] or [`AUDIO_TRACK`].
    pub track_id: u32,
    /// Decode time of the first sample, in the track's clock.
    pub base_dts: u64,
    /// The samples, in decode order.
    pub samples: &'a [Sample],
}

/// `sample_flags` (ISO 14496-12 §8.8.3.1) of a sync sample: depends on no other.
const SYNC_SAMPLE_FLAGS: u32 = 2 << 24;
/// `sample_flags` of other samples: depends on others, `sample_is_non_sync_sample`.
const NON_SYNC_SAMPLE_FLAGS: u32 = (1 << 24) | (1 << 16);

/// One moof+mdat: mfhd(sequence), one traf per run with samples (tfhd
/// default-base-is-moof, tfdt v1 base_dts, trun v1 with data-offset and per-sample
/// duration/size/flags and, when any is non-zero, signed composition offsets); one mdat
/// holding the runs' sample data in order. Sample flags: keyframe = depends_on 2 /
/// non-sync 0; others depends_on 1 / non-sync 1. Audio samples are all sync.
pub fn fragment(sequence: u32, runs: &[TrackRun]) -> Bytes {
    let runs: Vec<&TrackRun> = runs.iter().filter(|r| !r.samples.is_empty()).collect();
    let data_len: usize = runs
        .iter()
        .flat_map(|r| r.samples.iter())
        .map(|s| s.data.len())
        .sum();
    let sample_count: usize = runs.iter().map(|r| r.samples.len()).sum();
    let mut out = BytesMut::with_capacity(64 + runs.len() * 80 + sample_count * 16 + data_len + 16);
    // Where each trun's data_offset goes, patched once the moof's size is known.
    let mut offset_fields = Vec::with_capacity(runs.len());
    write_box(&mut out, b"moof", |out| {
        write_full_box(out, b"mfhd", 0, 0, |out| out.put_u32(sequence));
        for run in &runs {
            write_traf(out, run, &mut offset_fields);
        }
    });
    let moof_len = out.len();
    let mdat_header = if data_len + 8 > u32::MAX as usize {
        16
    } else {
        8
    };
    let mut run_start = moof_len + mdat_header;
    for (field, run) in offset_fields.iter().zip(&runs) {
        let offset = i32::try_from(run_start).unwrap_or(i32::MAX);
        out[*field..*field + 4].copy_from_slice(&offset.to_be_bytes());
        run_start += run.samples.iter().map(|s| s.data.len()).sum::<usize>();
    }
    if mdat_header == 16 {
        out.put_u32(1); // size in the 64-bit field after the type
        out.put_slice(b"mdat");
        out.put_u64((data_len + 16) as u64);
    } else {
        out.put_u32((data_len + 8) as u32);
        out.put_slice(b"mdat");
    }
    for sample in runs.iter().flat_map(|r| r.samples.iter()) {
        out.put_slice(&sample.data);
    }
    out.freeze()
}

fn write_traf(out: &mut BytesMut, run: &TrackRun, offset_fields: &mut Vec<usize>) {
    write_box(out, b"traf", |out| {
        // Flag 0x020000: default-base-is-moof (data offsets count from the moof).
        write_full_box(out, b"tfhd", 0, 0x02_0000, |out| out.put_u32(run.track_id));
        write_full_box(out, b"tfdt", 1, 0, |out| out.put_u64(run.base_dts));
        let with_cts = run.samples.iter().any(|s| s.cts_offset != 0);
        // data-offset, sample-duration, sample-size, sample-flags [, composition offset].
        let flags = 0x000001 | 0x000100 | 0x000200 | 0x000400 | if with_cts { 0x000800 } else { 0 };
        write_full_box(out, b"trun", 1, flags, |out| {
            out.put_u32(run.samples.len() as u32);
            offset_fields.push(out.len());
            out.put_i32(0); // data_offset, patched by `fragment`
            let all_sync = run.track_id == AUDIO_TRACK;
            for sample in run.samples {
                out.put_u32(sample.duration);
                out.put_u32(sample.data.len() as u32);
                out.put_u32(if sample.keyframe || all_sync {
                    SYNC_SAMPLE_FLAGS
                } else {
                    NON_SYNC_SAMPLE_FLAGS
                });
                if with_cts {
                    out.put_i32(sample.cts_offset);
                }
            }
        });
    });
}

/// Annex-B access unit -> length-prefixed (4-byte) NAL units for an avc1 sample, dropping
/// SPS (7), PPS (8) and AUD (9) NALs (the parameters live in avcC).
pub fn annexb_to_avcc(annexb: &[u8]) -> Bytes {
    let nals = split_annexb(annexb);
    let mut out = BytesMut::with_capacity(annexb.len() + 4 * nals.len());
    for nal in nals {
        if matches!(nal[0] & 0x1f, NAL_SPS | NAL_PPS | NAL_AUD) {
            continue;
        }
        out.put_u32(nal.len() as u32);
        out.put_slice(nal);
    }
    out.freeze()
}

/// The SPS and PPS NAL units (without start codes) found in an Annex-B access unit, if both
/// are there (the first of each).
pub fn parameter_sets(annexb: &[u8]) -> Option<(Bytes, Bytes)> {
    let nals = split_annexb(annexb);
    let find = |kind: u8| nals.iter().find(|n| n[0] & 0x1f == kind);
    let sps = find(NAL_SPS)?;
    let pps = find(NAL_PPS)?;
    Some((Bytes::copy_from_slice(sps), Bytes::copy_from_slice(pps)))
}

/// The avc1 codec string for playlists (RFC 6381), e.g. "avc1.64001f": profile_idc,
/// constraint flags and level_idc from the SPS (header byte included). Just "avc1" when
/// the SPS is too short to name them.
pub fn avc1_codec(sps: &[u8]) -> String {
    match sps.get(1..4) {
        Some(f) => format!("avc1.{:02x}{:02x}{:02x}", f[0], f[1], f[2]),
        None => "avc1".to_string(),
    }
}

/// The mp4a codec string for playlists (RFC 6381), "mp4a.40.<audioObjectType>", e.g.
/// "mp4a.40.2" for AAC-LC (also the answer for an unreadable config).
pub fn aac_codec(config: &[u8]) -> String {
    let object_type = AudioSpecificConfig::parse(config).map_or(2, |c| c.object_type);
    format!("mp4a.40.{object_type}")
}

#[cfg(test)]
mod tests {
    use super::super::test_media::{Unit, assert_whole_clip, media, probe, segments};
    use super::*;

    /// Samples for `units`: each lasts until the next unit's decode time (the last one
    /// until `next_dts`, or as long as the one before it); `scale` turns 90 kHz into the
    /// track's clock.
    fn samples(
        units: &[Unit],
        next_dts: Option<i64>,
        scale: (i64, i64),
        video: bool,
    ) -> Vec<Sample> {
        let to_track = |t: i64| t * scale.0 / scale.1;
        let mut out: Vec<Sample> = Vec::with_capacity(units.len());
        for (i, u) in units.iter().enumerate() {
            let next = units.get(i + 1).map(|n| n.dts).or(next_dts);
            let duration = match next {
                Some(next) => to_track(next) - to_track(u.dts),
                None => out.last().map_or(3000, |s| i64::from(s.duration)),
            };
            out.push(Sample {
                duration: duration.try_into().expect("positive duration"),
                cts_offset: (to_track(u.pts) - to_track(u.dts))
                    .try_into()
                    .expect("small"),
                keyframe: u.keyframe,
                data: if video {
                    annexb_to_avcc(&u.data)
                } else {
                    u.data.clone()
                },
            });
        }
        out
    }

    fn configs() -> (VideoConfig, AudioConfig) {
        let media = media();
        let video = VideoConfig::from_access_unit(&media.video[0].data).expect("SPS and PPS");
        let audio = AudioConfig::from_audio_specific_config(media.audio_config.clone())
            .expect("AudioSpecificConfig");
        (video, audio)
    }

    /// 48 kHz from 90 kHz.
    const AUDIO_SCALE: (i64, i64) = (8, 15);
    const VIDEO_SCALE: (i64, i64) = (1, 1);

    #[test]
    fn two_second_fragments_decode_with_the_muxed_timestamps() {
        let media = media();
        let (video, audio) = configs();
        assert_eq!((video.width, video.height), (320, 240));
        assert_eq!(
            (audio.sample_rate, audio.channels, &audio.config[..]),
            (48_000, 2, &[0x11, 0x90][..])
        );
        assert!(media.video[0].keyframe);
        assert!(
            media.video.iter().any(|u| u.pts != u.dts),
            "B-frames: presentation and decode times differ"
        );
        let mut file = init_segment(Some(&video), Some(&audio)).to_vec();
        let segments = segments(media, 2);
        assert_eq!(segments.len(), 2, "4 s in 2 s fragments");
        for (n, (v, a)) in segments.iter().enumerate() {
            let next_video = media.video.get(v.end).map(|u| u.dts);
            let next_audio = media.audio.get(a.end).map(|u| u.dts);
            let video_samples = samples(&media.video[v.clone()], next_video, VIDEO_SCALE, true);
            let audio_samples = samples(&media.audio[a.clone()], next_audio, AUDIO_SCALE, false);
            let runs = [
                TrackRun {
                    track_id: VIDEO_TRACK,
                    base_dts: media.video[v.start].dts as u64,
                    samples: &video_samples,
                },
                TrackRun {
                    track_id: AUDIO_TRACK,
                    base_dts: (media.audio[a.start].dts * AUDIO_SCALE.0 / AUDIO_SCALE.1) as u64,
                    samples: &audio_samples,
                },
            ];
            file.extend_from_slice(&fragment(n as u32 + 1, &runs));
        }
        assert_whole_clip(&file, "out.mp4");
    }

    #[test]
    fn video_only_and_audio_only_files_parse_and_decode() {
        let media = media();
        let (video, audio) = configs();
        let dir = tempfile::tempdir().expect("temp dir");
        let video_samples = samples(&media.video[..30], None, VIDEO_SCALE, true);
        let audio_samples = samples(&media.audio[..40], None, AUDIO_SCALE, false);
        let cases = [
            (
                "video.mp4",
                Some(&video),
                None,
                VIDEO_TRACK,
                &video_samples,
                "h264",
                320,
            ),
            (
                "audio.mp4",
                None,
                Some(&audio),
                AUDIO_TRACK,
                &audio_samples,
                "aac",
                0,
            ),
        ];
        for (name, v, a, track_id, samples, codec, width) in cases {
            let mut file = init_segment(v, a).to_vec();
            let run = TrackRun {
                track_id,
                base_dts: 0,
                samples,
            };
            file.extend_from_slice(&fragment(1, &[run]));
            let path = dir.path().join(name);
            std::fs::write(&path, &file).expect("write");
            let probe = probe(&path, "0");
            assert_eq!(probe.errors, "", "{name}");
            assert_eq!(probe.streams.len(), 1, "{name}");
            let (c, w, _, frames) = &probe.streams[0];
            assert_eq!(
                (c.as_str(), *w, *frames),
                (codec, width, samples.len() as u64)
            );
        }
    }

    /// Walks the boxes in `data`: (type, start, end) of each at this level.
    fn boxes(data: &[u8]) -> Vec<([u8; 4], usize, usize)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at + 8 <= data.len() {
            let size = u32::from_be_bytes(data[at..at + 4].try_into().unwrap()) as usize;
            out.push((data[at + 4..at + 8].try_into().unwrap(), at, at + size));
            at += size;
        }
        out
    }

    #[test]
    fn track_runs_point_at_their_samples_and_flag_sync_samples() {
        let sample = |data: &'static [u8], keyframe| Sample {
            duration: 3000,
            cts_offset: -3000,
            keyframe,
            data: Bytes::from_static(data),
        };
        let video = [sample(b"idr", true), sample(b"p-frame", false)];
        let audio = [Sample {
            cts_offset: 0,
            ..sample(b"aac", false)
        }];
        let frag = fragment(
            7,
            &[
                TrackRun {
                    track_id: VIDEO_TRACK,
                    base_dts: 1 << 40,
                    samples: &video,
                },
                TrackRun {
                    track_id: AUDIO_TRACK,
                    base_dts: 5,
                    samples: &audio,
                },
                TrackRun {
                    track_id: 3,
                    base_dts: 0,
                    samples: &[],
                },
            ],
        );
        let top = boxes(&frag);
        assert_eq!(
            top.iter().map(|b| &b.0).collect::<Vec<_>>(),
            [b"moof", b"mdat"]
        );
        assert_eq!(top[1].2, frag.len());
        assert_eq!(&frag[top[1].1 + 8..], b"idrp-frameaac");
        let moof = &frag[..top[0].2];
        let children = boxes(&moof[8..]);
        let kinds: Vec<_> = children.iter().map(|b| &b.0).collect();
        assert_eq!(
            kinds,
            [b"mfhd", b"traf", b"traf"],
            "no traf for an empty run"
        );
        assert_eq!(&moof[8 + children[0].1 + 12..][..4], &7u32.to_be_bytes());
        let trun_of = |traf: &([u8; 4], usize, usize)| {
            let body = &moof[8 + traf.1 + 8..8 + traf.2];
            let parts = boxes(body);
            assert_eq!(
                parts.iter().map(|b| &b.0).collect::<Vec<_>>(),
                [b"tfhd", b"tfdt", b"trun"]
            );
            let tfdt = &body[parts[1].1..parts[1].2];
            let base = u64::from_be_bytes(tfdt[12..20].try_into().unwrap());
            (base, body[parts[2].1..parts[2].2].to_vec())
        };
        let (base, trun) = trun_of(&children[1]);
        assert_eq!(base, 1 << 40);
        assert_eq!(
            &trun[8..12],
            &[1, 0, 0x0f, 0x01],
            "v1, with composition offsets"
        );
        let offset = i32::from_be_bytes(trun[16..20].try_into().unwrap()) as usize;
        assert_eq!(&frag[offset..offset + 3], b"idr");
        let first = &trun[20..36];
        assert_eq!(&first[8..12], &SYNC_SAMPLE_FLAGS.to_be_bytes());
        assert_eq!(&first[12..16], &(-3000i32).to_be_bytes());
        assert_eq!(&trun[36 + 8..36 + 12], &NON_SYNC_SAMPLE_FLAGS.to_be_bytes());
        let (base, trun) = trun_of(&children[2]);
        assert_eq!(base, 5);
        assert_eq!(&trun[8..12], &[1, 0, 0x07, 0x01], "no composition offsets");
        let offset = i32::from_be_bytes(trun[16..20].try_into().unwrap()) as usize;
        assert_eq!(&frag[offset..offset + 3], b"aac");
        assert_eq!(
            &trun[20 + 8..20 + 12],
            &SYNC_SAMPLE_FLAGS.to_be_bytes(),
            "audio is sync"
        );
    }

    #[test]
    fn annexb_to_avcc_keeps_only_picture_nal_units() {
        let au = [
            &[0, 0, 0, 1, 0x09, 0xf0][..],
            &[0, 0, 0, 1, 0x67, 0x64, 0x00, 0x1f, 0xac][..],
            &[0, 0, 1, 0x68, 0xee, 0x3c, 0x80][..],
            &[0, 0, 1, 0x06, 0x05, 0x01][..],
            &[0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00][..],
        ]
        .concat();
        assert_eq!(
            &annexb_to_avcc(&au)[..],
            &[0, 0, 0, 3, 0x06, 0x05, 0x01, 0, 0, 0, 3, 0x65, 0x88, 0x84]
        );
        let (sps, pps) = parameter_sets(&au).expect("both sets");
        assert_eq!(&sps[..], &[0x67, 0x64, 0x00, 0x1f, 0xac]);
        assert_eq!(&pps[..], &[0x68, 0xee, 0x3c, 0x80]);
        assert_eq!(parameter_sets(&au[..15]), None, "no PPS");
    }

    #[test]
    fn codec_strings() {
        // libx264's SPS for 1920x1080 High 4.0 and 640x360 constrained baseline 3.0.
        let high = [0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78];
        let baseline = [0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00];
        assert_eq!(avc1_codec(&high), "avc1.640028");
        assert_eq!(avc1_codec(&baseline), "avc1.42c01e");
        assert_eq!(avc1_codec(&[0x67]), "avc1");
        let (video, _) = configs();
        assert_eq!(
            &avc1_codec(&video.sps)[..7],
            "avc1.64",
            "the test input is High"
        );
        assert_eq!(aac_codec(&[0x11, 0x90]), "mp4a.40.2");
        assert_eq!(aac_codec(&[0x2b, 0x92, 0x08, 0x00]), "mp4a.40.5", "HE-AAC");
        // Object type 31 escapes to 32 + 6 bits: 42 (USAC) here.
        assert_eq!(aac_codec(&[0xf9, 0x46, 0x40]), "mp4a.40.42");
    }

    #[test]
    fn audio_specific_config_fields() {
        let lc = AudioConfig::from_audio_specific_config(Bytes::from_static(&[0x12, 0x10]))
            .expect("AAC-LC 44.1 kHz stereo");
        assert_eq!((lc.sample_rate, lc.channels), (44_100, 2));
        // AAC-LC, index 15 then the rate in 24 bits (48000), mono.
        let explicit =
            AudioSpecificConfig::parse(&[0x17, 0x80, 0x5d, 0xc0, 0x08]).expect("explicit rate");
        assert_eq!((explicit.sample_rate, explicit.channel_config), (48_000, 1));
        assert_eq!(AudioSpecificConfig::parse(&[0x12]), None);
    }
}
