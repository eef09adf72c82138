//! `--timeline`: each viewer's join milestones as CSV.

use std::time::Instant;

use feiyan::client::ViewerStats;

use crate::BenchError;

/// Writes `--timeline`: one CSV row per viewer in join order, each milestone in ms after
/// `t0`; a viewer that failed has only its error.
pub fn write_timeline(
    path: &std::path::Path,
    t0: Instant,
    joined: &[(usize, ViewerStats)],
    failed: &[(usize, String)],
) -> Result<(), BenchError> {
    let ms = |t: Option<Instant>| {
        t.map(|t| {
            format!(
                "{:.2}",
                t.saturating_duration_since(t0).as_secs_f64() * 1000.0
            )
        })
        .unwrap_or_default()
    };
    let mut rows: Vec<(usize, String)> = joined
        .iter()
        .map(|(i, s)| {
            let row = format!(
                "{i},{},{},{},{},{},\n",
                ms(Some(s.posted_at)),
                ms(Some(s.answered_at)),
                ms(s.connected_at),
                ms(s.first_rtp_at),
                ms(s.first_keyframe_at)
            );
            (*i, row)
        })
        .collect();
    rows.extend(
        failed
            .iter()
            .map(|(i, e)| (*i, format!("{i},,,,,,\"{}\"\n", e.replace('"', "\"\"")))),
    );
    rows.sort_by_key(|(i, _)| *i);
    let mut csv = String::from("viewer,posted,answered,connected,first_rtp,first_keyframe,error\n");
    for (_, row) in rows {
        csv.push_str(&row);
    }
    std::fs::write(path, csv)
        .map_err(|e| BenchError::Setup(format!("writing {}: {e}", path.display())))
}
