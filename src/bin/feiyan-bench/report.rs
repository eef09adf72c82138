//! The report: text for people, then one line of JSON for scripts.

use feiyan::client::{KindCounters, PublisherStats};
use serde_json::json;

use crate::{Args, KINDS, Timing};

/// What a run measured, to be reported.
pub struct Report {
    /// `--viewers`.
    pub requested: usize,
    /// Viewers whose connect succeeded.
    pub connected: usize,
    /// Viewers whose connect failed, by join index, with the error.
    pub failures: Vec<(usize, String)>,
    /// Connected viewers that never received a packet.
    pub silent: usize,
    /// Viewers receiving in the second before +15 s (`None` for a shorter run).
    pub receiving_at_15: Option<usize>,
    /// The publisher's counters at the end of the run.
    pub pub_stats: PublisherStats,
    /// Packets and bytes the viewers should have received, per kind in `KINDS` order.
    pub expected: [KindCounters; 2],
    /// Packets and bytes the viewers did receive, per kind in `KINDS` order.
    pub delivered: [KindCounters; 2],
    /// Viewers whose statistics were read (the connected ones).
    pub viewer_count: usize,
    /// Viewers with no sequence gap, reordering, duplicate or SSRC change.
    pub continuous: usize,
    /// RTP sequence numbers never received, over all viewers.
    pub seq_missing: u64,
    /// RTP packets received out of order, over all viewers.
    pub seq_late: u64,
    /// RTP packets received twice, over all viewers.
    pub seq_dup: u64,
    /// SSRC changes seen, over all viewers.
    pub ssrc_changes: u64,
    /// POST to first complete keyframe per viewer, ms, sorted.
    pub first_frame_ms: Vec<f64>,
    /// POST to first RTP packet per viewer, ms, sorted.
    pub first_rtp_ms: Vec<f64>,
    /// POST to 201 answer per viewer, ms, sorted.
    pub answer_ms: Vec<f64>,
    /// POST to ICE + DTLS connected per viewer, ms, sorted.
    pub connected_ms: Vec<f64>,
    /// Viewers whose first video frame was a keyframe.
    pub starts_on_keyframe: usize,
    /// Whether the steady window was long enough to measure the server.
    pub steady_window_ok: bool,
    /// Length of the steady window, s.
    pub steady_secs: Option<f64>,
    /// Viewers receiving media in the steady window (the divisor of per-viewer CPU).
    pub receiving_in_window: usize,
    /// Server CPU over the steady window, core-ms.
    pub cpu_total_ms: Option<f64>,
    /// Server CPU per receiving viewer-second, core-ms.
    pub cpu_per_viewer_s: Option<f64>,
    /// Server CPU rate with the publisher alone, core-ms/s.
    pub baseline_rate: Option<f64>,
    /// Server CPU per receiving viewer-second net of the baseline, core-ms.
    pub net_cpu_per_viewer_s: Option<f64>,
    /// Server RSS before the viewers joined, KiB.
    pub rss_before: Option<u64>,
    /// Server RSS at the end of the steady window, KiB.
    pub rss_steady: Option<u64>,
    /// Server RSS growth per connected viewer, KiB.
    pub rss_per_viewer_kib: Option<f64>,
    /// This process's CPU per receiving viewer-second in the steady window, core-ms.
    pub own_cpu_per_viewer_s: Option<f64>,
    /// This process's CPU from the first POST until the end, core-ms.
    pub own_cpu_total_ms: Option<f64>,
    /// First POST until every connect returned, ms.
    pub join_window_ms: f64,
    /// Server CPU per join in a storm, core-ms.
    pub server_join_ms: Option<f64>,
    /// This process's CPU per join in a storm, core-ms.
    pub own_join_ms: Option<f64>,
    /// Cores this process may run on.
    pub cores: usize,
    /// Viewer DELETEs that failed.
    pub delete_failures: usize,
}

impl Report {
    /// Prints the report on standard output.
    pub fn print(&self, args: &Args, timing: &Timing) {
        let total = |c: &[KindCounters; 2]| KindCounters {
            packets: c[0].packets + c[1].packets,
            bytes: c[0].bytes + c[1].bytes,
        };
        let (exp_all, del_all) = (total(&self.expected), total(&self.delivered));
        let median_ff = percentile(&self.first_frame_ms, 50.0);
        let p95_ff = percentile(&self.first_frame_ms, 95.0);
        let max_ff = self.first_frame_ms.last().copied();
        println!();
        println!("=== feiyan-bench report ===");
        println!("WHIP {}  ->  WHEP {}", args.whip, args.whep.join(" + "));
        println!(
            "viewers: {n} requested, {} connected, {} failed, {} never received media, join window {:.1} s, duration {:.1} s from first POST",
            self.connected,
            self.failures.len(),
            self.silent,
            timing.join_window.as_secs_f64(),
            timing.duration.as_secs_f64(),
            n = self.requested,
        );
        for (_, f) in self.failures.iter().take(5) {
            println!("  connect failure: {f}");
        }
        match self.receiving_at_15 {
            Some(c) => println!("viewers receiving at +15 s: {c}/{}", self.requested),
            None => println!("viewers receiving at +15 s: n/a (duration < 15 s)"),
        }
        println!(
            "publisher: sent video {} pkts / {} B, audio {} pkts / {} B; PLIs received {}, FIRs {}; pt video {} audio {}",
            self.pub_stats.video.packets,
            self.pub_stats.video.bytes,
            self.pub_stats.audio.packets,
            self.pub_stats.audio.bytes,
            self.pub_stats.plis_received,
            self.pub_stats.firs_received,
            self.pub_stats.video_payload_type,
            self.pub_stats.audio_payload_type
        );
        println!(
            "delivery (each viewer from its first packet + {:.1} s until the publisher stopped):",
            timing.settle.as_secs_f64()
        );
        for (k, kind) in KINDS.iter().enumerate() {
            println!(
                "  {kind:5}: expected {} pkts / {} B (sent x viewers), delivered {} pkts / {} B, loss {} (bytes {})",
                self.expected[k].packets,
                self.expected[k].bytes,
                self.delivered[k].packets,
                self.delivered[k].bytes,
                fmt_pct(loss_pct(
                    self.expected[k].packets,
                    self.delivered[k].packets
                )),
                fmt_pct(loss_pct(self.expected[k].bytes, self.delivered[k].bytes)),
            );
        }
        println!(
            "  total: expected {} pkts, delivered {} pkts, loss {}",
            exp_all.packets,
            del_all.packets,
            fmt_pct(loss_pct(exp_all.packets, del_all.packets))
        );
        println!(
            "  (boundary noise: about one packet per viewer per kind can be in flight at a window edge; a small negative loss is that, not duplication)"
        );
        println!(
            "RTP continuity: {continuous}/{} viewers fully continuous; seq missing {seq_missing}, late {seq_late}, duplicate {seq_dup}, SSRC changes {ssrc_changes}",
            self.viewer_count,
            continuous = self.continuous,
            seq_missing = self.seq_missing,
            seq_late = self.seq_late,
            seq_dup = self.seq_dup,
            ssrc_changes = self.ssrc_changes,
        );
        println!(
            "first frame (POST -> first complete keyframe): median {}, p95 {}, max {} ({} of {} viewers got one); first RTP median {}; {starts_on_keyframe} viewers started on a keyframe",
            fmt_opt(median_ff, " ms"),
            fmt_opt(p95_ff, " ms"),
            fmt_opt(max_ff, " ms"),
            self.first_frame_ms.len(),
            self.viewer_count,
            fmt_opt(percentile(&self.first_rtp_ms, 50.0), " ms"),
            starts_on_keyframe = self.starts_on_keyframe,
        );
        println!(
            "  of which: POST -> 201 answer median {}, POST -> ICE+DTLS connected median {}",
            fmt_opt(percentile(&self.answer_ms, 50.0), " ms"),
            fmt_opt(percentile(&self.connected_ms, 50.0), " ms"),
        );
        if args.server_pid.is_some() {
            if !self.steady_window_ok {
                println!(
                    "server: steady window too short (joins ended too close to the end of the run); no CPU figures"
                );
            }
            println!(
                "server CPU: {} core-ms per viewer-second over a {} steady window with {receiving_in_window} receiving viewers (total {}; publisher-only baseline {} core-ms/s; net of baseline {} core-ms per viewer-second)",
                fmt_opt(
                    self.cpu_per_viewer_s.map(|v| (v * 100.0).round() / 100.0),
                    ""
                ),
                fmt_opt(self.steady_secs, " s"),
                fmt_opt(self.cpu_total_ms, " core-ms"),
                fmt_opt(self.baseline_rate, ""),
                fmt_opt(self.net_cpu_per_viewer_s, ""),
                receiving_in_window = self.receiving_in_window,
            );
            println!(
                "server RSS: {} KiB before viewers, {} KiB with viewers, {} KiB per viewer",
                self.rss_before.map_or("n/a".to_owned(), |v| v.to_string()),
                self.rss_steady.map_or("n/a".to_owned(), |v| v.to_string()),
                fmt_opt(self.rss_per_viewer_kib, ""),
            );
        }
        println!(
            "bench process CPU: {} core-ms per viewer-second in the steady window, {} core-ms total since the first POST (the client shares the machine: if this is high, the numbers above are client-bound)",
            fmt_opt(self.own_cpu_per_viewer_s, ""),
            fmt_opt(self.own_cpu_total_ms, ""),
        );
        println!(
            "join CPU (first POST until the last viewer connected, {join_window_ms:.0} ms, net of the publisher; only when every POST went at once and it took 100 ms or more): server {} core-ms per join, bench {} core-ms per join; {n} joins are {} core-ms of work; this benchmark may run on {cores} core(s)",
            fmt_opt(self.server_join_ms, ""),
            fmt_opt(self.own_join_ms, ""),
            fmt_opt(
                self.server_join_ms
                    .zip(self.own_join_ms)
                    .map(|(s, c)| ((s + c) * self.requested as f64).round()),
                ""
            ),
            join_window_ms = self.join_window_ms,
            n = self.requested,
            cores = self.cores,
        );
        if self.delete_failures > 0 {
            println!("warning: {} viewer DELETEs failed", self.delete_failures);
        }

        let kc = |c: &KindCounters| json!({"packets": c.packets, "bytes": c.bytes});
        let report = json!({
            "whip": args.whip,
            "whep": args.whep,
            "viewers_requested": self.requested,
            "viewers_connected": self.connected,
            "viewers_failed": self.failures.len(),
            "viewers_silent": self.silent,
            "viewers_receiving_at_15s": self.receiving_at_15,
            "join_window_s": timing.join_window.as_secs_f64(),
            "duration_s": timing.duration.as_secs_f64(),
            "bitrate_kbps": args.bitrate_kbps,
            "settle_s": timing.settle.as_secs_f64(),
            "sent": {"video": kc(&self.pub_stats.video), "audio": kc(&self.pub_stats.audio)},
            "plis_received": self.pub_stats.plis_received,
            "expected": {"video": kc(&self.expected[0]), "audio": kc(&self.expected[1]), "total": kc(&exp_all)},
            "delivered": {"video": kc(&self.delivered[0]), "audio": kc(&self.delivered[1]), "total": kc(&del_all)},
            "loss_pct": {
                "video": loss_pct(self.expected[0].packets, self.delivered[0].packets),
                "audio": loss_pct(self.expected[1].packets, self.delivered[1].packets),
                "total": loss_pct(exp_all.packets, del_all.packets),
                "total_bytes": loss_pct(exp_all.bytes, del_all.bytes),
            },
            "rtp": {
                "continuous_viewers": self.continuous,
                "seq_missing": self.seq_missing,
                "seq_late": self.seq_late,
                "seq_duplicates": self.seq_dup,
                "ssrc_changes": self.ssrc_changes,
            },
            "first_frame_ms": {"median": median_ff, "p95": p95_ff, "max": max_ff, "count": self.first_frame_ms.len()},
            "first_rtp_ms_median": percentile(&self.first_rtp_ms, 50.0),
            "answer_ms_median": percentile(&self.answer_ms, 50.0),
            "connected_ms_median": percentile(&self.connected_ms, 50.0),
            "viewers_started_on_keyframe": self.starts_on_keyframe,
            "server": {
                "pid": args.server_pid,
                "steady_window_s": self.steady_secs,
                "receiving_viewers_in_window": self.receiving_in_window,
                "cpu_core_ms_total": self.cpu_total_ms,
                "cpu_core_ms_per_viewer_s": self.cpu_per_viewer_s,
                "cpu_baseline_core_ms_per_s": self.baseline_rate,
                "cpu_net_core_ms_per_viewer_s": self.net_cpu_per_viewer_s,
                "rss_kib_before_viewers": self.rss_before,
                "rss_kib_with_viewers": self.rss_steady,
                "rss_kib_per_viewer": self.rss_per_viewer_kib,
            },
            "bench_cpu_core_ms_per_viewer_s": self.own_cpu_per_viewer_s,
            "join_cpu": {
                "window_ms": self.join_window_ms,
                "server_core_ms_per_join": self.server_join_ms,
                "bench_core_ms_per_join": self.own_join_ms,
                "cores": self.cores,
            },
            "connect_failures": self.failures.iter().take(5).map(|(_, f)| f).collect::<Vec<_>>(),
        });
        println!("{report}");
    }
}

/// Each duration in milliseconds, sorted (for [`percentile`]).
pub fn sorted_ms(durations: impl Iterator<Item = std::time::Duration>) -> Vec<f64> {
    let mut ms: Vec<f64> = durations.map(|d| d.as_secs_f64() * 1000.0).collect();
    ms.sort_by(f64::total_cmp);
    ms
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted.get(rank.min(sorted.len()) - 1).copied()
}

fn loss_pct(expected: u64, delivered: u64) -> Option<f64> {
    (expected > 0).then(|| (1.0 - delivered as f64 / expected as f64) * 100.0)
}

fn fmt_opt(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1}{unit}"))
}

fn fmt_pct(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.2} %"))
}
