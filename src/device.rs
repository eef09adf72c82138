//! The signed device id `fy_dev`: one resident, one id, across WHEP, HLS and later interaction.
//!
//! The server issues an id to a browser that has none (the `/watch` and `/tv` pages set the
//! cookie); the pages send it back as `vid` on WHEP and on HLS playlist URLs. An id is
//! `<32 hex random>.<16 hex tag>`, the tag being the first 8 bytes of HMAC-SHA256 over the
//! random part with the server's secret, so unique-viewer counts can trust an id without
//! storing every one issued: a forged or mistyped id simply fails [`DeviceIds::verify`] and
//! counts as no id. The secret is 32 random bytes in `[catalog] state_dir/device-id.key`,
//! made at first start ([`DeviceIds::load_or_create`]); a cluster derives one from its
//! cluster secret ([`DeviceIds::from_secret`]) so every node accepts every node's ids.
//!
//! Also here: which kind of device a User-Agent is ([`Terminal`]), which WHEP and HLS both
//! record for their viewers.

use std::io::Write;
use std::path::Path;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

/// The cookie's name.
pub const COOKIE: &str = "fy_dev";

/// The secret's file in the state folder.
pub const KEY_FILE: &str = "device-id.key";

/// How long a browser keeps the cookie: 400 days, the most browsers honour.
const COOKIE_MAX_AGE_SECS: u64 = 34_560_000;

/// Hex digits of the random part.
const RANDOM_HEX: usize = 32;
/// Hex digits of the tag (8 bytes of HMAC-SHA256).
const TAG_HEX: usize = 16;
/// Length of a whole id: random part, '.', tag.
const ID_LEN: usize = RANDOM_HEX + 1 + TAG_HEX;

/// Goes before the random part in the MAC, so a secret shared with other uses (the cluster
/// secret) never signs the same message for them.
const DOMAIN: &[u8] = b"feiyan fy_dev v1\0";

/// Issues and checks device ids with one secret.
#[derive(Clone)]
pub struct DeviceIds {
    /// HMAC-SHA256 keyed with the secret (keyed once; cloned per id).
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for DeviceIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.write_str("DeviceIds { .. }")
    }
}

impl DeviceIds {
    /// Reads `state_dir/device-id.key` (32 random bytes, created 0600 at first start,
    /// together with `state_dir` when missing). A file of another length is an error, not
    /// replaced: replacing it would quietly turn every resident into a new one.
    pub fn load_or_create(state_dir: &Path) -> std::io::Result<DeviceIds> {
        let path = state_dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(secret) => return Self::checked(&path, &secret),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(state_dir)?;
        let secret: [u8; 32] = rand::random();
        // Written whole under another name, then linked into place: a crash leaves no short
        // key file, and of two servers starting together on one folder the first wins and
        // the other reads its key.
        let tmp = state_dir.join(format!("{KEY_FILE}.{}.tmp", std::process::id()));
        let written = (|| {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
            file.write_all(&secret)?;
            file.sync_all()?;
            std::fs::hard_link(&tmp, &path)
        })();
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => Ok(DeviceIds::from_secret(&secret)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                Self::checked(&path, &std::fs::read(&path)?)
            }
            Err(e) => Err(e),
        }
    }

    fn checked(path: &Path, secret: &[u8]) -> std::io::Result<DeviceIds> {
        if secret.len() != 32 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{} holds {} bytes, not the 32 of a device-id secret; restore it from a \
                     backup, or delete it to start over (every resident then counts as new)",
                    path.display(),
                    secret.len()
                ),
            ));
        }
        Ok(DeviceIds::from_secret(secret))
    }

    /// From a secret (the cluster issue will derive one from the cluster secret). Every
    /// holder of the same secret issues and accepts the same ids.
    pub fn from_secret(secret: &[u8]) -> DeviceIds {
        DeviceIds {
            // HMAC takes a key of any length.
            mac: <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key"),
        }
    }

    /// A new id: URL- and cookie-safe ASCII, `<32 hex random>.<16 hex of HMAC-SHA256>`.
    pub fn issue(&self) -> String {
        let random = hex::encode(rand::random::<[u8; RANDOM_HEX / 2]>());
        let tag = self.tag(random.as_bytes()).finalize().into_bytes();
        format!("{random}.{}", hex::encode(&tag[..TAG_HEX / 2]))
    }

    /// Whether `id` was issued with this secret: exactly the issued spelling (lowercase hex),
    /// the tag compared in constant time. Anything else is `false`; never panics.
    pub fn verify(&self, id: &str) -> bool {
        let bytes = id.as_bytes();
        if bytes.len() != ID_LEN || bytes[RANDOM_HEX] != b'.' {
            return false;
        }
        let (random, tag) = (&id[..RANDOM_HEX], &id[RANDOM_HEX + 1..]);
        let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !lower_hex(random) || !lower_hex(tag) {
            return false;
        }
        let Ok(tag) = hex::decode(tag) else {
            return false;
        };
        self.tag(random.as_bytes())
            .verify_truncated_left(&tag)
            .is_ok()
    }

    fn tag(&self, random_hex: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(DOMAIN);
        mac.update(random_hex);
        mac
    }
}

/// `Set-Cookie` value: `fy_dev=<id>; Path=/; Max-Age=34560000; SameSite=Lax` (+ `Secure`
/// when served over TLS). Not HttpOnly: page scripts send it as `vid`.
pub fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; Max-Age={COOKIE_MAX_AGE_SECS}; SameSite=Lax{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `fy_dev` value in a `Cookie` header, if any (the first one when a browser sends
/// several, which it does with the most specific path first).
pub fn from_cookie(header: &str) -> Option<&str> {
    header.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        (name.trim() == COOKIE).then(|| value.trim().trim_matches('"'))
    })
}

/// The kind of device a viewer watches on, guessed from its User-Agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Terminal {
    /// Phones and tablets.
    Mobile,
    /// Desktop and laptop browsers.
    Pc,
    /// Smart TVs, set-top boxes (IPTV boxes included) and TV sticks.
    Tv,
    /// Everything else: media players and encoders without a TV marker, scripts, unknown.
    Other,
}

/// Markers of a TV or set-top box anywhere in a lowercased User-Agent.
const TV_MARKERS: &[&str] = &[
    "smart-tv",
    "smarttv",
    "smart_tv",
    "hbbtv",
    "tizen",
    "web0s",
    "webos",
    "netcast",
    "bravia",
    "androidtv",
    "android tv",
    "googletv",
    "google tv",
    "appletv",
    "tvos",
    "roku",
    "crkey",
    "chromecast",
    "mitv",
    "mibox",
    "hisense",
    "vidaa",
    "skyworth",
    "coocaa",
    "viera",
    "nettv",
    "vewd",
    "opera tv",
    "philipstv",
    "aquos tv",
    // Chinese IPTV and OTT set-top boxes: Huawei EC61xx, ZTE B860A/B760/ZXV10, Fiberhome
    // HG680, Skyworth E900V, the iPanel middleware browser, Tmall MagicBox, Dangbei.
    "ec6106",
    "ec6108",
    "ec6109",
    "ec6110",
    "ec2106",
    "b860a",
    "b760",
    "zxv10",
    "hg680",
    "e900v",
    "ipanel",
    "iptv",
    "magicbox",
    "dangbei",
    "hi3798",
];

/// Phones and tablets, checked after the TV markers (TVs often claim Android too).
const MOBILE_MARKERS: &[&str] = &[
    "mobile",
    "android",
    "iphone",
    "ipad",
    "ipod",
    "harmonyos",
    "openharmony",
];

/// Desktops, checked last.
const PC_MARKERS: &[&str] = &["windows", "macintosh", "x11", "linux", "cros"];

/// Media players and tools at the start of a User-Agent: `Other` unless a TV marker says
/// where they run.
const PLAYERS: &[&str] = &[
    "vlc",
    "libvlc",
    "lavf",
    "ffmpeg",
    "ffplay",
    "ffprobe",
    "mpv",
    "libmpv",
    "gstreamer",
    "kodi",
    "obs",
    "curl",
    "wget",
];

impl Terminal {
    /// Classifies a User-Agent header. TV markers are checked first because TV browsers
    /// often also claim to be Linux or Android; then players (VLC, FFmpeg's `Lavf`, mpv),
    /// which are `Other` even when they name their platform; then phones, then desktops.
    pub fn from_user_agent(ua: &str) -> Terminal {
        let lower = ua.to_ascii_lowercase();
        if TV_MARKERS.iter().any(|m| lower.contains(m))
            || has_word(&lower, "tv")
            || has_word(&lower, "stb")
            || fire_tv(ua)
        {
            return Terminal::Tv;
        }
        let first = lower
            .split(|c: char| !c.is_ascii_alphanumeric())
            .next()
            .unwrap_or("");
        if PLAYERS.contains(&first) {
            Terminal::Other
        } else if MOBILE_MARKERS.iter().any(|m| lower.contains(m)) {
            Terminal::Mobile
        } else if PC_MARKERS.iter().any(|m| lower.contains(m)) {
            Terminal::Pc
        } else {
            Terminal::Other
        }
    }

    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Terminal::Mobile => "mobile",
            Terminal::Pc => "pc",
            Terminal::Tv => "tv",
            Terminal::Other => "other",
        }
    }
}

/// Whether `word` stands alone in `text` (no ASCII letter or digit on either side):
/// "TV Safari", "Android; TV Build", "(Apple TV; ...)", but not "tvheadend" or "ATVA".
fn has_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

/// Amazon Fire TV models: a word `AFT`, a capital, then capitals or digits (`AFTS`,
/// `AFTMM`, `AFTKA`, `AFTHA002`), as in `(Linux; Android 9; AFTKA Build/...)`. Case
/// matters: Fire tablets are `KF...`.
fn fire_tv(ua: &str) -> bool {
    ua.split(|c: char| !c.is_ascii_alphanumeric()).any(|w| {
        let rest = w.strip_prefix("AFT").unwrap_or("");
        rest.len() <= 8
            && rest.starts_with(|c: char| c.is_ascii_uppercase())
            && rest
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_ids_verify_and_look_like_the_format() {
        let ids = DeviceIds::from_secret(&[7u8; 32]);
        let a = ids.issue();
        let b = ids.issue();
        assert_ne!(a, b);
        assert_eq!(a.len(), ID_LEN, "{a}");
        assert!(
            a.bytes()
                .all(|c| c == b'.' || c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
            "{a}"
        );
        assert!(ids.verify(&a) && ids.verify(&b));
        // Another holder of the same secret (a cluster node) accepts it.
        assert!(DeviceIds::from_secret(&[7u8; 32]).verify(&a));
        assert!(!DeviceIds::from_secret(&[8u8; 32]).verify(&a));
    }

    #[test]
    fn tampered_and_junk_ids_are_refused() {
        let ids = DeviceIds::from_secret(b"a secret of any length");
        let id = ids.issue();
        // One hex digit changed anywhere, in the random part or the tag.
        for at in (0..ID_LEN).filter(|&i| i != RANDOM_HEX) {
            let mut bytes = id.clone().into_bytes();
            bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
            let forged = String::from_utf8(bytes).unwrap();
            assert!(!ids.verify(&forged), "{forged}");
        }
        let upper = id.to_ascii_uppercase();
        let (random, tag) = id.split_once('.').unwrap();
        for junk in [
            "",
            ".",
            "abc",
            upper.as_str(),
            random,
            &format!("{random}."),
            &format!("{random}.{tag}0"),
            &format!("{random}.{}", &tag[..TAG_HEX - 1]),
            &format!("{random}-{tag}"),
            &format!(" {random}.{}", &tag[1..]),
            &format!("{}é.{tag}", &random[..RANDOM_HEX - 2]),
            &format!("{random}.{}zz", &tag[..TAG_HEX - 2]),
            "0123456789abcdef0123456789abcdef.0123456789abcdef",
            &"é".repeat(30),
        ] {
            assert!(!ids.verify(junk), "{junk:?}");
        }
    }

    #[test]
    fn the_secret_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = DeviceIds::load_or_create(&state).unwrap();
        let path = state.join(KEY_FILE);
        assert_eq!(std::fs::read(&path).unwrap().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        }
        let id = first.issue();
        assert!(DeviceIds::load_or_create(&state).unwrap().verify(&id));
        let names: Vec<_> = std::fs::read_dir(&state).unwrap().flatten().collect();
        assert_eq!(names.len(), 1, "only the key file is left: {names:?}");
        std::fs::write(&path, b"short").unwrap();
        let err = DeviceIds::load_or_create(&state).unwrap_err();
        assert!(err.to_string().contains("32"), "{err}");
        assert_eq!(format!("{first:?}"), "DeviceIds { .. }");
    }

    #[test]
    fn cookies_are_set_and_read() {
        assert_eq!(
            set_cookie("abc.def", false),
            "fy_dev=abc.def; Path=/; Max-Age=34560000; SameSite=Lax"
        );
        assert_eq!(
            set_cookie("abc.def", true),
            "fy_dev=abc.def; Path=/; Max-Age=34560000; SameSite=Lax; Secure"
        );
        assert_eq!(from_cookie("fy_dev=x.y"), Some("x.y"));
        assert_eq!(from_cookie("a=1; fy_dev=x.y; b=2"), Some("x.y"));
        assert_eq!(from_cookie("a=1;fy_dev=\"x.y\""), Some("x.y"));
        assert_eq!(from_cookie("fy_dev=first; fy_dev=second"), Some("first"));
        assert_eq!(from_cookie("fy_dev="), Some(""));
        assert_eq!(from_cookie("xfy_dev=1; fy_devx=2; fy_dev"), None);
        assert_eq!(from_cookie(""), None);
        assert_eq!(from_cookie(";;=;"), None);
    }

    #[test]
    fn terminals_from_real_user_agents() {
        use Terminal::*;
        let cases = [
            // Phones and tablets.
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1",
                Mobile,
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Mobile Safari/537.36",
                Mobile,
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
                Mobile,
            ),
            (
                "Mozilla/5.0 (Linux; Android 13; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
                Mobile,
            ),
            (
                "Mozilla/5.0 (Linux; Android 10; HarmonyOS; NOH-AN00) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/99.0.4844.88 Mobile Safari/537.36 MicroMessenger/8.0.40",
                Mobile,
            ),
            (
                "Mozilla/5.0 (Linux; Android 9; KFTRWI) AppleWebKit/537.36 (KHTML, like Gecko) Silk/120.3.2 like Chrome/120.0.6099.230 Safari/537.36",
                Mobile,
            ),
            (
                "Dalvik/2.1.0 (Linux; U; Android 12; Pixel 6 Build/SQ3A.220705.003)",
                Mobile,
            ),
            (
                "AppleCoreMedia/1.0.0.21A329 (iPhone; U; CPU OS 17_0 like Mac OS X; zh_cn)",
                Mobile,
            ),
            // Desktops.
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                Pc,
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36",
                Pc,
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
                Pc,
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
                Pc,
            ),
            // TVs and set-top boxes.
            (
                "Mozilla/5.0 (SMART-TV; LINUX; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) 76.0.3809.146/6.0 TV Safari/537.36",
                Tv,
            ),
            (
                "Mozilla/5.0 (SMART-TV; Linux; Tizen 2.3) AppleWebkit/538.1 (KHTML, like Gecko) SamsungBrowser/1.0 TV Safari/538.1",
                Tv,
            ),
            (
                "Mozilla/5.0 (Web0S; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/79.0.3945.79 Safari/537.36 WebAppManager",
                Tv,
            ),
            (
                "Mozilla/5.0 (webOS; Linux/SmartTV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/38.0.2125.122 Safari/537.36 LG Browser/8.00.00(LGE; 60UH6550-UB; 03.00.15; 1; DTV_W16N); webOS.TV-2016; LG NetCast.TV-2013 Compatible (LGE, 60UH6550-UB, wireless)",
                Tv,
            ),
            (
                "Mozilla/5.0 (DirectFB; Linux armv7l) AppleWebKit/534.26+ (KHTML, like Gecko) Version/5.0 Safari/534.26+ LG Browser/5.00.00(+mouse+3D+SCREEN+TUNER; LGE; 42LM670T-ZA; 04.41.03; 0x00000001;); LG NetCast.TV-2012 0",
                Tv,
            ),
            (
                "HbbTV/1.5.1 (+DRM;Samsung;SmartTV2020;T-KSU2EDEUC-1506.3;;) Tizen/5.5 (+TVPLUS+SmartHubLink) Chrome/69.0.3497.106",
                Tv,
            ),
            (
                "Mozilla/5.0 (Linux; Android 9; BRAVIA 4K VH2 Build/PTT1.190515.001.S52) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/90.0.4430.91 Safari/537.36 OPR/46.0.2207.0 OMI/4.21.0.273.DIA6.149 Model/Sony-BRAVIA-4K-VH2",
                Tv,
            ),
            (
                "Mozilla/5.0 (Linux; Android 9; AFTKA Build/PS7633.3445N; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/108.0.5359.160 Mobile Safari/537.36",
                Tv,
            ),
            (
                "Mozilla/5.0 (Linux; Android 7.1.2; AFTMM Build/NS6297) AppleWebKit/537.36 (KHTML, like Gecko) Silk/112.5.1 like Chrome/112.0.5615.213 Safari/537.36",
                Tv,
            ),
            (
                "Mozilla/5.0 (Linux; Android 11; SHIELD Android TV Build/RQ1A.210105.003; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.43 Mobile Safari/537.36",
                Tv,
            ),
            (
                "Mozilla/5.0 (Linux; Android 10; TV Build/QP1A.191105.004) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/83.0.4103.101 Safari/537.36",
                Tv,
            ),
            (
                "AppleCoreMedia/1.0.0.20K71 (Apple TV; U; CPU OS 16_1 like Mac OS X; en_us)",
                Tv,
            ),
            ("AppleTV11,1/11.1", Tv),
            ("Roku/DVP-12.5 (12.5.0.4178-88)", Tv),
            (
                "Mozilla/5.0 (X11; Linux armv7l) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/114.0.0.0 Safari/537.36 CrKey/1.56.500000 DeviceType/AndroidTV",
                Tv,
            ),
            (
                "Mozilla/5.0 (Linux; Android 9; MiTV-MSSP1 Build/PTT1.190826.001; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/104.0.5112.97 Mobile Safari/537.36",
                Tv,
            ),
            ("Dalvik/2.1.0 (Linux; U; Android 9; MIBOX4 Build/PI)", Tv),
            (
                "Mozilla/5.0 (Linux; Andr0id 9.0; HisenseTV) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/72.0.3626.105 Safari/537.36 VIDAA/4.0(Hisense;SmartTV;55A7100F;MTK9632/V0000.01.00a.J0902)",
                Tv,
            ),
            (
                "Mozilla/5.0 (Linux; Android 9; Skyworth 8H78 Build/PI) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/72.0.3626.121 Safari/537.36",
                Tv,
            ),
            (
                "Mozilla/5.0 (Linux; Android 4.4.2; EC6108V9 Build/KOT49H) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/30.0.0.0 Safari/537.36",
                Tv,
            ),
            (
                "Mozilla/5.0 (Linux; Android 4.4.2; B860AV1.1-T Build/KOT49H) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/30.0.0.0 Safari/537.36",
                Tv,
            ),
            (
                "Mozilla/5.0 (Linux; Android 9; MagicBox_M17S Build/PI) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/66.0.3359.158 Safari/537.36",
                Tv,
            ),
            (
                "Mozilla/5.0 (compatible; iPanel 3.0; Linux) AppleWebKit/533.3",
                Tv,
            ),
            (
                "Opera/9.80 (Linux mips; Opera TV Store/5581; U; en) Presto/2.12.362 Version/12.11",
                Tv,
            ),
            // Players and tools.
            ("VLC/3.0.18 LibVLC/3.0.18", Other),
            ("Lavf/59.27.100", Other),
            ("mpv 0.35.1", Other),
            ("GStreamer souphttpsrc 1.22.0 libsoup/3.2.2", Other),
            (
                "Kodi/20.2 (X11; Linux x86_64) Debian/12 App_Bitness/64 Version/20.2",
                Other,
            ),
            (
                "Kodi/19.4 (Linux; Android 9.0; MIBOX4 Build/PI) Android/9.0.0 Sys_CPU/armv8l",
                Tv,
            ),
            ("feiyan-bench/0.1", Other),
            ("curl/7.88.1", Other),
            ("", Other),
        ];
        for (ua, want) in cases {
            assert_eq!(Terminal::from_user_agent(ua), want, "{ua}");
        }
        assert!(!has_word("tvheadend on atva", "tv"));
    }
}
