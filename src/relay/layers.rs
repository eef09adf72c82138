//! Simulcast from WHIP publishers, without I/O: which layers (RIDs) an offer sends, how big
//! a layer's picture is (read from its first keyframe), and which layer becomes the source
//! and what viewers call the others.
//!
//! The layers are offered to viewers as the channel's renditions with no transcode: the
//! largest is the source (`?quality=source`), the others are named by their height
//! (`360p`), or by their RID when no keyframe of theirs was seen before the channel went
//! live.

use super::media::VideoCodec;

/// The RIDs the offer's video section sends, in its `a=simulcast:send` order (RFC 8853:
/// the sender's preference, by convention highest first); paused (`~`) ones are left out.
/// Empty when the offer sends no simulcast. Alternatives (`a,b`) count as layers of their
/// own, as rtc treats them.
pub(super) fn offered_layers(sdp: &str) -> Vec<String> {
    /// What one media section says about simulcast.
    #[derive(Default)]
    struct Section {
        video: bool,
        sends: bool,
        rids: Vec<String>,
        order: Option<Vec<String>>,
    }
    impl Section {
        fn layers(self) -> Option<Vec<String>> {
            let order = self.order.filter(|_| self.video && self.sends)?;
            Some(
                order
                    .into_iter()
                    .filter(|id| self.rids.contains(id))
                    .collect(),
            )
        }
    }
    let mut section: Option<Section> = None;
    for line in sdp.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("m=") {
            if let Some(layers) = section.take().and_then(Section::layers) {
                return layers;
            }
            section = Some(Section {
                video: rest.starts_with("video"),
                sends: true,
                ..Section::default()
            });
            continue;
        }
        let Some(s) = section.as_mut().filter(|s| s.video) else {
            continue;
        };
        if line == "a=recvonly" || line == "a=inactive" {
            s.sends = false;
        } else if let Some(value) = line.strip_prefix("a=rid:") {
            let mut parts = value.split_whitespace();
            if let (Some(id), Some("send")) = (parts.next(), parts.next()) {
                s.rids.push(id.to_string());
            }
        } else if let Some(value) = line.strip_prefix("a=simulcast:") {
            let mut parts = value.split_whitespace();
            while let (Some(dir), Some(list)) = (parts.next(), parts.next()) {
                if dir == "send" {
                    s.order = Some(
                        list.split([';', ','])
                            .filter(|id| !id.starts_with('~') && !id.is_empty())
                            .map(str::to_string)
                            .collect(),
                    );
                }
            }
        }
    }
    section.and_then(Section::layers).unwrap_or_default()
}

/// One layer as the engine knows it when the channel goes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Layer {
    pub(super) rid: String,
    /// Width and height from its first keyframe, when one was seen.
    pub(super) size: Option<(u32, u32)>,
}

/// Orders `layers` (given in offer order) into the channel's video streams and names the
/// renditions: with every size known, largest first; otherwise the offer's order. Returns
/// the RIDs by stream index (0 is the source) and the names of streams `1..`.
pub(super) fn arrange(layers: &[Layer]) -> (Vec<String>, Vec<String>) {
    let mut ordered: Vec<&Layer> = layers.iter().collect();
    if layers.iter().all(|l| l.size.is_some()) {
        // Stable: equal sizes keep the offer's order.
        ordered
            .sort_by_key(|l| std::cmp::Reverse(l.size.map(|(w, h)| u64::from(w) * u64::from(h))));
    }
    let mut names: Vec<String> = Vec::new();
    for layer in ordered.iter().skip(1) {
        let by_height = layer.size.map(|(_, h)| format!("{h}p"));
        let name = match by_height {
            Some(name) if !names.contains(&name) && name != crate::config::SOURCE_QUALITY => name,
            Some(name) => format!("{name}-{}", layer.rid),
            None => layer.rid.clone(),
        };
        names.push(name);
    }
    (ordered.iter().map(|l| l.rid.clone()).collect(), names)
}

/// The picture size a video payload announces, if it starts a keyframe that says it:
/// an H.264 SPS (single NAL unit or inside a STAP-A), a VP8 key frame's header.
pub(super) fn picture_size(codec: VideoCodec, payload: &[u8]) -> Option<(u32, u32)> {
    match codec {
        VideoCodec::H264 => h264_sps(payload)
            .and_then(crate::media::sps::read_sps)
            .map(|sps| (sps.width, sps.height)),
        VideoCodec::Vp8 => vp8_size(payload),
        VideoCodec::Other => None,
    }
}

/// The SPS NAL unit (header byte included) carried by an RTP payload.
fn h264_sps(payload: &[u8]) -> Option<&[u8]> {
    match payload.first()? & 0x1f {
        7 => Some(payload),
        24 => {
            let mut rest = &payload[1..];
            while rest.len() > 2 {
                let size = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let nal = rest.get(2..2 + size)?;
                if nal.first().is_some_and(|b| b & 0x1f == 7) {
                    return Some(nal);
                }
                rest = &rest[2 + size..];
            }
            None
        }
        _ => None,
    }
}

/// Width and height from the first packet of a VP8 key frame (RFC 7741 descriptor, then
/// RFC 6386 9.1 frame header).
fn vp8_size(payload: &[u8]) -> Option<(u32, u32)> {
    let desc = *payload.first()?;
    if desc & 0x10 == 0 || desc & 0x0f != 0 {
        return None;
    }
    let mut i = 1;
    if desc & 0x80 != 0 {
        let ext = *payload.get(i)?;
        i += 1;
        if ext & 0x80 != 0 {
            i += if payload.get(i)? & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            i += 1;
        }
        if ext & 0x30 != 0 {
            i += 1;
        }
    }
    let frame = payload.get(i..i + 10)?;
    if frame[0] & 0x01 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u32::from(u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff);
    let height = u32::from(u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff);
    Some((width, height))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHROME_VIDEO: &str = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\na=rid:h send\r\na=rid:m send\r\n\
        a=rid:l send\r\na=simulcast:send h;m;l\r\n";

    #[test]
    fn layers_come_in_simulcast_order_without_paused_ones() {
        assert_eq!(offered_layers(CHROME_VIDEO), ["h", "m", "l"]);
        let low_first = CHROME_VIDEO.replace("send h;m;l", "send q;~h;f").replace(
            "a=rid:h send\r\na=rid:m send\r\na=rid:l send",
            "a=rid:q send\r\na=rid:h send\r\na=rid:f send",
        );
        assert_eq!(offered_layers(&low_first), ["q", "f"]);
        let plain = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n";
        assert!(offered_layers(plain).is_empty());
        let receiving = CHROME_VIDEO.replace(
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly",
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=recvonly",
        );
        assert!(offered_layers(&receiving).is_empty());
    }

    #[test]
    fn the_largest_layer_is_the_source_and_the_rest_are_named_by_height() {
        let layer = |rid: &str, size| Layer {
            rid: rid.into(),
            size,
        };
        // Listed low first, as many pages do: sizes decide.
        let (rids, names) = arrange(&[
            layer("q", Some((320, 180))),
            layer("h", Some((640, 360))),
            layer("f", Some((1280, 720))),
        ]);
        assert_eq!(rids, ["f", "h", "q"]);
        assert_eq!(names, ["360p", "180p"]);
        // A size not known yet: the offer's order, the unknown one by its RID.
        let (rids, names) = arrange(&[
            layer("h", None),
            layer("m", Some((640, 360))),
            layer("l", None),
        ]);
        assert_eq!(rids, ["h", "m", "l"]);
        assert_eq!(names, ["360p", "l"]);
        // Two layers of one height keep distinct names.
        let (_, names) = arrange(&[
            layer("a", Some((1280, 720))),
            layer("b", Some((640, 360))),
            layer("c", Some((480, 360))),
        ]);
        assert_eq!(names, ["360p", "360p-c"]);
    }

    #[test]
    fn sizes_from_keyframes() {
        // libx264 constrained baseline 1280x720 (46 macroblock rows, cropped by 16 lines).
        let sps = [
            0x67, 0x42, 0xc0, 0x1f, 0xd9, 0x00, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03,
            0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x83, 0x24, 0x80,
        ];
        assert_eq!(picture_size(VideoCodec::H264, &sps), Some((1280, 720)));
        // The same SPS in a STAP-A beside a PPS.
        let mut stap = vec![0x78, 0x00, sps.len() as u8];
        stap.extend_from_slice(&sps);
        stap.extend_from_slice(&[0x00, 0x04, 0x68, 0xce, 0x3c, 0x80]);
        assert_eq!(picture_size(VideoCodec::H264, &stap), Some((1280, 720)));
        // libx264 high profile 320x180 (12 rows, cropped; chroma format and more fields).
        let high = [
            0x67, 0x64, 0x00, 0x0c, 0xac, 0xd9, 0x41, 0x41, 0x9f, 0x9f, 0x01, 0x10, 0x00, 0x00,
            0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0x20, 0xf1, 0x42, 0x99, 0x60,
        ];
        assert_eq!(picture_size(VideoCodec::H264, &high), Some((320, 180)));
        // An IDR fragment says nothing about size.
        assert_eq!(picture_size(VideoCodec::H264, &[0x7c, 0x85, 0x88]), None);
        // VP8 key frame, 640x360, with a two-byte picture id.
        let vp8 = [
            0x90, 0x80, 0x81, 0x23, 0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01,
        ];
        assert_eq!(picture_size(VideoCodec::Vp8, &vp8), Some((640, 360)));
        // An inter frame.
        let mut inter = vp8;
        inter[4] |= 1;
        assert_eq!(picture_size(VideoCodec::Vp8, &inter), None);
    }
}
