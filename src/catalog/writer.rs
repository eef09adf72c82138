//! The audience writer: the relay hands attendance events to a queue and never waits; a
//! spool thread keeps up to `[catalog] audience_queue_depth` of them in memory and appends
//! the rest to a spill file in `[catalog] state_dir`, reading them back in order as room
//! frees up; a task writes them in batches (one transaction per batch, ~1 s worst case).
//! Nothing is dropped: while the database is unavailable the batch waits and the queue
//! spills; a batch the database refuses is retried `[catalog] write_retries` times, then
//! written row by row, and a row still refused goes to the dead-letter file with the
//! reason ([`is_outage`] says which errors are which). At shutdown whatever the database
//! still refuses after the grace period is left in the spill file, which the next start
//! replays first.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::FutureExt;
use sqlx::AssertSqlSafe;
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use super::Catalog;
use super::sessions::peak_of;
use super::spill::{DEAD_LETTER_FILE, SPILL_FILE, SpillFile, dead_letter_line};
use crate::audience::{AttendanceCounters, AudienceEvent, AudienceSink, now_ms};
use crate::config::CatalogConfig;

/// Events per batch (one transaction).
const MAX_BATCH: usize = 2048;
/// Longest wait between two attempts while the database is unavailable.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Where and how much the writer keeps.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Folder of the spill and dead-letter files.
    pub state_dir: PathBuf,
    /// Events held in memory before further ones spill to the file.
    pub queue_depth: usize,
    /// Times a refused batch is retried before it is written row by row.
    pub write_retries: u32,
}

impl WriterConfig {
    /// The `[catalog]` settings.
    pub fn from_config(catalog: &CatalogConfig) -> WriterConfig {
        WriterConfig {
            state_dir: catalog.state_dir(),
            queue_depth: catalog.audience_queue_depth,
            write_retries: catalog.write_retries,
        }
    }
}

/// What the spool thread and the writing task share.
struct Backlog {
    /// A std mutex: held only to move events in or out, never across an `.await` or
    /// around file I/O.
    queue: Mutex<Queue>,
    /// Wakes the writing task: events arrived, or the spool thread is done.
    ready: Notify,
}

struct Queue {
    /// Events not yet written, oldest first: the writing task copies a batch from the
    /// front and removes it only once written (or dead-lettered), so a shutdown that gives
    /// up on a batch still has it here to put in the spill file.
    mem: VecDeque<AudienceEvent>,
    /// Events ever put in `mem`, and ever removed from it after writing: an event's place
    /// in that count tells whether it is written.
    entered: u64,
    taken: u64,
    /// No more events will come and every one is written: the writing task ends.
    done: bool,
    /// Shutdown gave up waiting: the spool thread puts everything not written in the
    /// spill file and ends.
    stop: bool,
    /// Events read from a spill file an earlier run left end at this `entered` count once
    /// all of them are in `mem`.
    leftover_end: Option<u64>,
}

impl Backlog {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic elsewhere while holding it leaves the queue consistent (every change is
        // a push or a drain), so a poisoned lock is still used.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The running writer: its spool thread and writing task.
pub struct AttendanceWriter {
    task: JoinHandle<()>,
    spool: std::thread::JoinHandle<()>,
    backlog: Arc<Backlog>,
    /// Set when the writing task or the spool thread panicked (see
    /// [`AttendanceWriter::failure`]).
    failure: watch::Receiver<Option<String>>,
}

/// The text of a panic's payload (`panic!("...")` gives a `&str` or a `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Starts the writer; it ends when the sink is dropped and everything queued is written
/// (see [`AttendanceWriter::finish`]). A spill file an earlier run left is replayed before
/// any new event. Fails when the spill file cannot be opened.
pub fn spawn_writer(
    catalog: Catalog,
    config: WriterConfig,
) -> std::io::Result<(AudienceSink, AttendanceWriter)> {
    let spill = SpillFile::open(&config.state_dir.join(SPILL_FILE))?;
    let counters = catalog.attendance.clone();
    if spill.unread() > 0 {
        info!(
            events = spill.unread(),
            "replaying attendance a previous run left in its spill file"
        );
        AttendanceCounters::add(&counters.queued, spill.unread() as u64);
    }
    let backlog = Arc::new(Backlog {
        queue: Mutex::new(Queue {
            mem: VecDeque::new(),
            entered: 0,
            taken: 0,
            done: false,
            stop: false,
            leftover_end: (spill.unread() == 0).then_some(0),
        }),
        ready: Notify::new(),
    });
    let (tx, rx) = mpsc::channel();
    let (failed, failure) = watch::channel(None);
    let failed = Arc::new(failed);
    let spool = {
        let backlog = backlog.clone();
        let depth = config.queue_depth.max(1);
        let failed = failed.clone();
        std::thread::Builder::new()
            .name("fy-attendance-spool".into())
            .spawn(move || {
                let run =
                    std::panic::AssertUnwindSafe(|| spool(rx, spill, &backlog, depth, &counters));
                if let Err(payload) = std::panic::catch_unwind(run) {
                    let why = panic_message(&*payload);
                    failed.send_replace(Some(format!("its spool thread panicked: {why}")));
                }
            })?
    };
    let writing = write_loop(
        catalog,
        backlog.clone(),
        config.write_retries,
        config.state_dir.join(DEAD_LETTER_FILE),
    );
    let task = tokio::spawn(async move {
        if let Err(payload) = std::panic::AssertUnwindSafe(writing).catch_unwind().await {
            let why = panic_message(&*payload);
            failed.send_replace(Some(format!("its writing task panicked: {why}")));
        }
    });
    Ok((
        AudienceSink::new(tx),
        AttendanceWriter {
            task,
            spool,
            backlog,
            failure,
        },
    ))
}

impl AttendanceWriter {
    /// Becomes `Some(why)` if the writer can no longer write (its task or its spool thread
    /// panicked): the server must not go on as if attendance were recorded.
    pub fn failure(&self) -> watch::Receiver<Option<String>> {
        self.failure.clone()
    }

    /// Waits up to `limit` until the events a previous run left in the spill file are
    /// written; false if some are not (the database refuses; they stay queued first).
    pub async fn leftover_written(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            {
                let q = self.backlog.lock();
                if q.leftover_end.is_some_and(|end| q.taken >= end) {
                    return true;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Once the sink is dropped: waits up to `grace` for every event to be written. If the
    /// database still refuses then, the writing is abandoned and every event not written
    /// is left, in order, in the spill file for the next start. True if all were written.
    pub async fn finish(mut self, grace: Duration) -> bool {
        let written = tokio::time::timeout(grace, &mut self.task).await.is_ok();
        if !written {
            self.task.abort();
            self.backlog.lock().stop = true;
        }
        let spool = self.spool;
        let _ = tokio::task::spawn_blocking(move || spool.join()).await;
        written
    }
}

/// The spool thread: moves events from the relay's channel into memory up to `depth`,
/// past that to the spill file, and from the file back into memory as the writing task
/// frees room, always in the order they happened. It never lets a new event into memory
/// while older ones wait in the file.
fn spool(
    rx: mpsc::Receiver<AudienceEvent>,
    mut file: SpillFile,
    backlog: &Backlog,
    depth: usize,
    counters: &AttendanceCounters,
) {
    // Events bound for the file that could not be appended yet (disk full): kept in order.
    let mut pending: Vec<AudienceEvent> = Vec::new();
    let mut open = true;
    let mut leftover = file.unread();
    // `entered` count after the last event read from the file: the file may be emptied
    // once the writing task has taken that many.
    let mut file_end: u64 = 0;
    let mut append_failing = false;
    loop {
        let busy = file.has_lines() || !pending.is_empty();
        let wait = Duration::from_millis(if busy { 20 } else { 250 });
        let mut incoming = Vec::new();
        if open {
            match rx.recv_timeout(wait) {
                Ok(event) => {
                    incoming.push(event);
                    while incoming.len() < 4096 {
                        match rx.try_recv() {
                            Ok(event) => incoming.push(event),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        } else {
            std::thread::sleep(wait);
        }
        AttendanceCounters::add(&counters.queued, incoming.len() as u64);
        let stop = {
            let mut q = backlog.lock();
            if !q.stop && file.unread() == 0 && pending.is_empty() {
                let room = depth.saturating_sub(q.mem.len()).min(incoming.len());
                q.entered += room as u64;
                q.mem.extend(incoming.drain(..room));
                if room > 0 {
                    backlog.ready.notify_one();
                }
            }
            q.stop
        };
        pending.append(&mut incoming);
        if stop {
            // Shutdown gave up on the database: everything not written goes to the file,
            // in order: memory, the file's unread lines, then what came since.
            while let Ok(event) = rx.try_recv() {
                pending.push(event);
            }
            let head: Vec<AudienceEvent> = backlog.lock().mem.iter().cloned().collect();
            let kept = head.len() + file.unread() + pending.len();
            match file.rewrite(&head, &pending) {
                Ok(()) => warn!(
                    events = kept,
                    "attendance not written at shutdown is kept in the spill file for the next start"
                ),
                Err(err) => error!(
                    %err,
                    events = kept,
                    "could not keep unwritten attendance in the spill file; it is lost"
                ),
            }
            return;
        }
        if !pending.is_empty() {
            match file.append(&pending) {
                Ok(()) => {
                    AttendanceCounters::add(&counters.spilled, pending.len() as u64);
                    pending.clear();
                    append_failing = false;
                }
                Err(err) => {
                    if !append_failing {
                        error!(%err, events = pending.len(), "cannot append to the attendance spill file; holding events in memory");
                    }
                    append_failing = true;
                }
            }
        }
        if file.unread() > 0 {
            let room = depth.saturating_sub(backlog.lock().mem.len());
            let max = if leftover > 0 {
                room.min(leftover)
            } else {
                room
            };
            if max > 0 {
                match file.read(max) {
                    Ok((events, lines)) => {
                        leftover = leftover.saturating_sub(lines);
                        AttendanceCounters::sub(&counters.queued, (lines - events.len()) as u64);
                        AttendanceCounters::add(&counters.replayed, events.len() as u64);
                        let mut q = backlog.lock();
                        q.entered += events.len() as u64;
                        q.mem.extend(events);
                        file_end = q.entered;
                        if leftover == 0 && q.leftover_end.is_none() {
                            q.leftover_end = Some(q.entered);
                        }
                        backlog.ready.notify_one();
                    }
                    Err(err) => error!(%err, "cannot read the attendance spill file"),
                }
            }
        }
        if file.unread() == 0 && pending.is_empty() && file.has_lines() {
            let written = backlog.lock().taken >= file_end;
            if written && let Err(err) = file.clear() {
                error!(%err, "cannot empty the attendance spill file");
            }
        }
        if !open && pending.is_empty() && !file.has_lines() {
            let mut q = backlog.lock();
            if q.mem.is_empty() {
                q.done = true;
                drop(q);
                backlog.ready.notify_one();
                if let Err(err) = file.remove() {
                    debug!(%err, "attendance spill file not removed");
                }
                return;
            }
        }
    }
}

/// The writing task: batches from the front of the memory queue, written until the
/// database takes them (see [`write_surely`]), then removed from the queue.
async fn write_loop(catalog: Catalog, backlog: Arc<Backlog>, retries: u32, dead_letters: PathBuf) {
    let counters = catalog.attendance.clone();
    let mut idle = true;
    loop {
        let batch: Option<Vec<AudienceEvent>> = {
            let q = backlog.lock();
            if q.mem.is_empty() {
                if q.done {
                    return;
                }
                None
            } else {
                Some(q.mem.iter().take(MAX_BATCH).cloned().collect())
            }
        };
        let Some(batch) = batch else {
            backlog.ready.notified().await;
            idle = true;
            continue;
        };
        if idle && batch.len() < MAX_BATCH {
            // Gather what arrives within a short window so a join storm is one transaction.
            idle = false;
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        write_surely(&catalog, &batch, retries, &dead_letters).await;
        {
            let mut q = backlog.lock();
            q.mem.drain(..batch.len());
            q.taken += batch.len() as u64;
        }
        AttendanceCounters::sub(&counters.queued, batch.len() as u64);
        debug!(events = batch.len(), "audience batch written");
    }
}

/// Whether a failed write means the database is unavailable for now (true) rather than
/// refusing these rows (false).
///
/// An outage is waited out for as long as it lasts: the events stay queued (spilling to the
/// file) and are written when the database takes writes again; nothing is dead-lettered,
/// because rows refused for an outage would be accepted later. That covers a busy or
/// locked SQLite file, a read-only or full disk, I/O errors, lost or refused connections,
/// pool timeouts, a PostgreSQL server shutting down or in recovery, serialization failures
/// and deadlocks, lock timeouts, and a revoked grant (`42501`: it refuses every row alike
/// and is lifted by an operator, not by changing the row). Also any error not known to be
/// about the data, such as a missing table, so a misconfigured database loses nothing.
///
/// Only errors about the rows themselves are refusals: SQLite's constraint, type-mismatch,
/// too-big and range errors; PostgreSQL's classes 22 (data exception) and 23 (integrity
/// constraint violation); and a value the driver cannot encode.
pub(super) fn is_outage(err: &sqlx::Error, is_postgres: bool) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if is_postgres {
                !(code.starts_with("22") || code.starts_with("23"))
            } else {
                // Extended result codes carry the primary code in their low byte.
                let primary = code.parse::<i64>().map(|c| c & 0xff).unwrap_or(0);
                // SQLITE_TOOBIG, SQLITE_CONSTRAINT, SQLITE_MISMATCH, SQLITE_RANGE.
                !matches!(primary, 18 | 19 | 20 | 25)
            }
        }
        sqlx::Error::Encode(_) => false,
        _ => true,
    }
}

/// Waits between attempts while the database is unavailable, doubling up to
/// [`MAX_BACKOFF`]; warns once per outage.
struct Outage {
    backoff: Duration,
    since: Option<tokio::time::Instant>,
}

impl Outage {
    fn new() -> Outage {
        Outage {
            backoff: Duration::from_millis(100),
            since: None,
        }
    }

    async fn wait(&mut self, err: &sqlx::Error, events: usize) {
        if self.since.is_none() {
            warn!(%err, events, "catalog unavailable for attendance; keeping events and retrying");
            self.since = Some(tokio::time::Instant::now());
        }
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }

    fn over(&mut self) {
        if let Some(since) = self.since.take() {
            info!(
                secs = since.elapsed().as_secs_f64(),
                "catalog takes attendance again"
            );
        }
        self.backoff = Duration::from_millis(100);
    }
}

/// Writes `batch` whatever it takes: waits out outages; a batch refused `retries + 1`
/// times is written row by row, and a row still refused goes to the dead-letter file.
async fn write_surely(
    catalog: &Catalog,
    batch: &[AudienceEvent],
    retries: u32,
    dead_letters: &std::path::Path,
) {
    let mut outage = Outage::new();
    let mut refusals = 0;
    loop {
        match write_batch(catalog, batch).await {
            Ok(()) => {
                outage.over();
                return;
            }
            Err(err) if is_outage(&err, catalog.is_postgres) => {
                outage.wait(&err, batch.len()).await
            }
            Err(err) => {
                outage.over();
                refusals += 1;
                if refusals > retries {
                    warn!(%err, events = batch.len(), "attendance batch refused; writing it row by row");
                    break;
                }
                warn!(%err, events = batch.len(), refusals, "attendance batch refused; retrying");
                tokio::time::sleep(Duration::from_millis(100 << refusals.min(4))).await;
            }
        }
    }
    for event in batch {
        loop {
            match write_batch(catalog, std::slice::from_ref(event)).await {
                Ok(()) => {
                    outage.over();
                    break;
                }
                Err(err) if is_outage(&err, catalog.is_postgres) => outage.wait(&err, 1).await,
                Err(err) => {
                    let reason = err.to_string();
                    error!(?event, %reason, "attendance row refused; kept in the dead-letter file");
                    AttendanceCounters::add(&catalog.attendance.refused, 1);
                    if let Err(err) = append_dead_letter(dead_letters, event, &reason).await {
                        error!(%err, ?event, "cannot write the attendance dead-letter file");
                    }
                    break;
                }
            }
        }
    }
}

async fn append_dead_letter(
    path: &std::path::Path,
    event: &AudienceEvent,
    reason: &str,
) -> std::io::Result<()> {
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await?;
    file.write_all(&dead_letter_line(event, reason, now_ms()))
        .await?;
    file.sync_data().await
}

/// Rows per multi-row statement on SQLite: there is no round trip to save, and statements
/// with thousands of bound values were measured to write slower per row than short ones.
const ROWS_PER_STATEMENT_SQLITE: usize = 100;

/// The two `UPDATE ... FROM d(k, v)` a batch applies: leaves, then ends. Each condition
/// makes a repeated value a no-op. An end also records the session's peak from its viewer
/// rows ([`peak_of`]); every join of the session came before its end in the queue, so it is
/// written by then.
/// The leave and end statements' `SET ... FROM d WHERE ...` parts. A cluster member ends
/// only sessions it runs: an edge feeds the origin's session to its viewers, and its
/// relay's end of that feed is not the session's end.
fn update_sets(catalog: &Catalog) -> [(&'static str, String); 2] {
    let owned = if catalog.is_member() {
        format!(
            " AND (sessions.node_id IS NULL OR sessions.node_id = {})",
            catalog.node_id().unwrap_or(0)
        )
    } else {
        String::new()
    };
    [
        (
            "viewers",
            "left_at = d.v FROM d WHERE viewers.id = d.k AND viewers.left_at IS NULL".into(),
        ),
        (
            "sessions",
            format!(
                "ended_at = d.v, peak_viewers = {} \
                 FROM d WHERE sessions.id = d.k AND sessions.ended_at IS NULL{owned}",
                peak_of("SELECT k FROM d", "sessions.id")
            ),
        ),
    ]
}

/// A join as a JSON object for `json_to_recordset` (PostgreSQL).
#[derive(serde::Serialize)]
struct JoinRow<'a> {
    id: i64,
    s: i64,
    j: i64,
    t: &'a str,
    k: &'a str,
    c: &'a str,
}

/// A (key, value) pair as a JSON object for `json_to_recordset` (PostgreSQL).
#[derive(serde::Serialize)]
struct Pair {
    k: i64,
    v: i64,
}

/// PostgreSQL: every kind of change is one statement however big the batch, its rows passed
/// as one JSON text parameter. Thousands of bound parameters cost more to send, parse and
/// plan than the rows cost to write (16.6k events/s with 1000-row VALUES lists).
async fn write_postgres(
    catalog: &Catalog,
    tx: &mut sqlx::AnyConnection,
    joins: &[&AudienceEvent],
    updates: [&Vec<(i64, i64)>; 2],
) -> Result<(), sqlx::Error> {
    // Every statement here finds rows by key. On a new database the planner's statistics
    // say `viewers` is empty, and it chose a sequential scan of viewers per leave: a
    // 50,000-viewer lecture's leaves took 20 s per batch until autovacuum analysed the
    // table. Within this transaction only, seq scans are ruled out.
    sqlx::query("SET LOCAL enable_seqscan = off")
        .execute(&mut *tx)
        .await?;
    let rows: Vec<JoinRow> = joins
        .iter()
        .filter_map(|event| match event {
            AudienceEvent::ViewerJoined {
                id,
                session,
                at_ms,
                terminal,
                viewer_key,
                client_hash,
            } => Some(JoinRow {
                id: id.0,
                s: session.0,
                j: *at_ms,
                t: terminal,
                k: viewer_key,
                c: client_hash,
            }),
            _ => None,
        })
        .collect();
    if !rows.is_empty() {
        sqlx::query(
            "INSERT INTO viewers (id, session_id, joined_at, terminal, viewer_key, client_hash, node_id) \
             SELECT id, s, j, t, k, c, $2 FROM json_to_recordset($1::json) \
             AS x(id BIGINT, s BIGINT, j BIGINT, t TEXT, k TEXT, c TEXT) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(json(&rows))
        .bind(catalog.node_id())
        .execute(&mut *tx)
        .await?;
    }
    for ((table, set), rows) in update_sets(catalog).iter().zip(updates) {
        if rows.is_empty() {
            continue;
        }
        let pairs: Vec<Pair> = rows.iter().map(|&(k, v)| Pair { k, v }).collect();
        let sql = format!(
            "WITH d AS (SELECT * FROM json_to_recordset($1::json) AS x(k BIGINT, v BIGINT)) \
             UPDATE {table} SET {set}"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(json(&pairs))
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

fn json(rows: &impl serde::Serialize) -> String {
    // Serializing plain numbers and strings cannot fail.
    serde_json::to_string(rows).unwrap_or_default()
}

/// One batch in one transaction, as a few multi-row statements instead of one per event.
///
/// Grouping by kind keeps the outcome of writing the events one by one in order: joins
/// are inserted before any leave is applied (a leave always follows its join, in this batch
/// or an earlier one); of several leaves or ends of one row only the first counts, as with
/// the `IS NULL` guards. Every statement is idempotent, so a retried
/// batch writes nothing twice.
async fn write_batch(catalog: &Catalog, batch: &[AudienceEvent]) -> Result<(), sqlx::Error> {
    let mut joins = Vec::new();
    let mut leaves: Vec<(i64, i64)> = Vec::new();
    let mut ends: Vec<(i64, i64)> = Vec::new();
    let mut seen = HashSet::new();
    for event in batch {
        match event {
            AudienceEvent::ViewerJoined { viewer_key, .. }
                if viewer_key.starts_with(crate::audience::EDGE_PULL_KEY) =>
            {
                // Another node's edge pull is no viewer (its residents have rows there).
            }
            AudienceEvent::ViewerJoined { id, .. } => {
                if seen.insert((0, id.0)) {
                    joins.push(event);
                }
            }
            AudienceEvent::ViewerLeft { id, at_ms } => {
                if seen.insert((1, id.0)) {
                    leaves.push((id.0, *at_ms));
                }
            }
            AudienceEvent::SessionEnded { session, at_ms } => {
                if seen.insert((2, session.0)) {
                    ends.push((session.0, *at_ms));
                }
            }
        }
    }
    let mut tx = catalog.pool().begin().await?;
    if catalog.is_postgres {
        write_postgres(catalog, &mut tx, &joins, [&leaves, &ends]).await?;
        return tx.commit().await;
    }
    for chunk in joins.chunks(ROWS_PER_STATEMENT_SQLITE) {
        // Idempotent so a retried batch does not fail on rows already written.
        let mut sql = String::from(
            "INSERT INTO viewers (id, session_id, joined_at, terminal, viewer_key, client_hash, node_id) \
             VALUES ",
        );
        // This server's node (a number of its own, not input).
        let node = catalog
            .node_id()
            .map_or_else(|| "NULL".to_string(), |n| n.to_string());
        for i in 0..chunk.len() {
            let b = i * 6;
            if i > 0 {
                sql.push(',');
            }
            sql += &format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, {node})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6
            );
        }
        sql += " ON CONFLICT (id) DO NOTHING";
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for event in chunk {
            if let AudienceEvent::ViewerJoined {
                id,
                session,
                at_ms,
                terminal,
                viewer_key,
                client_hash,
            } = event
            {
                q = q
                    .bind(id.0)
                    .bind(session.0)
                    .bind(*at_ms)
                    .bind(*terminal)
                    .bind(viewer_key.as_str())
                    .bind(client_hash.as_str());
            }
        }
        q.execute(&mut *tx).await?;
    }
    for ((table, set), rows) in update_sets(catalog).iter().zip([&leaves, &ends]) {
        for chunk in rows.chunks(ROWS_PER_STATEMENT_SQLITE) {
            // UPDATE ... FROM a list of (key, value) pairs: SQLite >= 3.33 and PostgreSQL.
            let pairs: Vec<String> = (0..chunk.len())
                .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
                .collect();
            let sql = format!(
                "WITH d(k, v) AS (VALUES {}) UPDATE {table} SET {set}",
                pairs.join(",")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (k, v) in chunk {
                q = q.bind(*k).bind(*v);
            }
            q.execute(&mut *tx).await?;
        }
    }
    tx.commit().await
}
