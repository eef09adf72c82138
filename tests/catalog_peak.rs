//! A session's peak as the catalog computes it from the session's viewer rows (the most
//! rows open at once; a leave and a join in the same millisecond do not overlap): while
//! the session is live, when the audience writer applies its end, and when it is closed
//! directly. On SQLite and on PostgreSQL.

mod catalog_db;

use feiyan::audience::{AudienceEvent, AudienceSink, now_ms};
use std::time::Duration;

use feiyan::catalog::{WriterConfig, spawn_writer};
use feiyan::ids::SessionId;

/// Queues a viewer row of `session` from `from` to `to` seconds after `t0` (open if none).
fn watch(sink: &mut AudienceSink, session: SessionId, t0: i64, from: i64, to: Option<i64>) {
    let id = sink.viewer_id();
    sink.push(AudienceEvent::ViewerJoined {
        id,
        session,
        at_ms: t0 + from * 1000,
        terminal: "pc",
        viewer_key: format!("viewer-{}", id.0),
        client_hash: String::new(),
    });
    if let Some(to) = to {
        sink.push(AudienceEvent::ViewerLeft {
            id,
            at_ms: t0 + to * 1000,
        });
    }
}

async fn peaks_come_from_viewer_rows(db: catalog_db::TestDb) {
    let catalog = &db.catalog;
    let station = catalog.add_station("中心", "所", "站").await.unwrap();
    let t0 = now_ms() - 3_600_000;
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(catalog_db::open_lecture(catalog, &station, t0).await);
    }
    let (ended, live, closed) = (sessions[0], sessions[1], sessions[2]);
    let state = tempfile::tempdir().unwrap();
    let (mut sink, writer) = spawn_writer(
        catalog.clone(),
        WriterConfig {
            state_dir: state.path().to_path_buf(),
            queue_depth: 64,
            write_retries: 5,
        },
    )
    .unwrap();
    // Two leave at 10 s as two join: two at once, never four.
    watch(&mut sink, ended, t0, 0, Some(10));
    watch(&mut sink, ended, t0, 5, Some(10));
    watch(&mut sink, ended, t0, 10, Some(20));
    watch(&mut sink, ended, t0, 10, None);
    sink.push(AudienceEvent::SessionEnded {
        session: ended,
        at_ms: t0 + 30_000,
    });
    // Still live: three at once at 2 s.
    watch(&mut sink, live, t0, 0, None);
    watch(&mut sink, live, t0, 1, None);
    watch(&mut sink, live, t0, 2, Some(3));
    watch(&mut sink, live, t0, 4, Some(5));
    // Closed by the catalog itself: three at once from 2 s to 5 s.
    watch(&mut sink, closed, t0, 0, Some(5));
    watch(&mut sink, closed, t0, 1, Some(6));
    watch(&mut sink, closed, t0, 2, Some(7));
    drop(sink);
    assert!(writer.finish(Duration::from_secs(30)).await, "all written");
    catalog.close_session(closed, t0 + 10_000).await.unwrap();

    let summary = |id| async move {
        catalog
            .session_summary(id, now_ms())
            .await
            .unwrap()
            .unwrap()
    };
    let s = summary(ended).await;
    assert!(!s.live, "{s:?}");
    assert_eq!(s.peak_viewers, 2, "{s:?}");
    let s = summary(live).await;
    assert!(s.live, "{s:?}");
    assert_eq!(s.peak_viewers, 3, "{s:?}");
    let s = summary(closed).await;
    assert!(!s.live, "{s:?}");
    assert_eq!(s.peak_viewers, 3, "{s:?}");
    db.finish().await;
}

#[tokio::test]
async fn sqlite_peaks_come_from_viewer_rows() {
    peaks_come_from_viewer_rows(catalog_db::sqlite().await).await;
}

#[tokio::test]
async fn postgres_peaks_come_from_viewer_rows() {
    peaks_come_from_viewer_rows(catalog_db::postgres().await).await;
}
