//! CPU time and resident memory of a process (the server's, or the benchmark's own), read
//! from /proc.

use std::time::Instant;

/// CPU time (user + system) and resident memory of a process, read from /proc.
#[derive(Debug, Clone, Copy)]
pub struct ProcSample {
    /// When the sample was taken.
    pub at: Instant,
    /// utime + stime in milliseconds of CPU (core-ms).
    pub cpu_ms: f64,
    /// VmRSS in KiB, when readable.
    pub rss_kib: Option<u64>,
}

pub fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

pub fn sample_proc(pid: &str, ticks: f64) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Field 3 (state) is fields[0]; utime is field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let rss_kib = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        });
    Some(ProcSample {
        at: Instant::now(),
        cpu_ms: (utime + stime) * 1000.0 / ticks,
        rss_kib,
    })
}

/// CPU time (core-ms) of each thread of process `pid` whose name starts with `prefix`
/// (feiyan's relay shards are `fy-shard-N`), sorted by name.
#[allow(dead_code)] // feiyan-hls-bench shares this file and samples no threads.
pub fn sample_threads(pid: &str, prefix: &str, ticks: f64) -> Vec<(String, f64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, f64)> = tasks
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let name = &stat[stat.find('(')? + 1..stat.rfind(')')?];
            if !name.starts_with(prefix) {
                return None;
            }
            let rest = &stat[stat.rfind(')')? + 1..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((name.to_string(), (utime + stime) * 1000.0 / ticks))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}
