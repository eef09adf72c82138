//! Bulk rows for demos, benchmarks and statistics fixtures: a whole city-year of lectures,
//! film classes, online viewers and headcounts, written with multi-row inserts.
//!
//! The generator is seeded, so the same flags build the same city.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::{AnyConnection, AssertSqlSafe, Connection};

use super::{Catalog, CatalogError, SessionKind, hash_key, shanghai_midnight_ms};
use crate::audience::now_ms;
use crate::ids::{CenterId, InstituteId};

/// A session row to write as it is (fixtures and demo data).
#[derive(Debug, Clone)]
pub struct SessionFixture {
    /// The station holding it.
    pub station_id: i64,
    /// Lecture, film class or other.
    pub kind: SessionKind,
    /// Title.
    pub title: String,
    /// Start, unix ms.
    pub started_at: i64,
    /// End, unix ms; `None` while live.
    pub ended_at: Option<i64>,
    /// Highest concurrent viewers.
    pub peak_viewers: i64,
    /// In-person headcount.
    pub in_person: i64,
    /// Film shown, if any.
    pub film_id: Option<i64>,
}

/// A viewer attendance row to write as it is.
#[derive(Debug, Clone)]
pub struct ViewerFixture {
    /// Session watched.
    pub session_id: i64,
    /// Join, unix ms.
    pub joined_at: i64,
    /// Leave, unix ms; `None` while watching.
    pub left_at: Option<i64>,
    /// mobile, pc, tv or other.
    pub terminal: &'static str,
    /// Stable anonymous viewer id.
    pub viewer_key: String,
}

/// How big a city to build.
#[derive(Debug, Clone)]
pub struct DemoSpec {
    /// 中心 count.
    pub centers: usize,
    /// 所 count (spread over the centers).
    pub institutes: usize,
    /// 站 count (spread over the institutes).
    pub stations: usize,
    /// Days of history, ending yesterday.
    pub days: usize,
    /// Random seed.
    pub seed: u64,
    /// Scales each session's online audience (1.0: about 20 viewer rows per session).
    pub audience: f64,
}

/// What [`Catalog::build_demo`] wrote.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DemoReport {
    /// Stations created.
    pub stations: usize,
    /// Sessions written.
    pub sessions: usize,
    /// Viewer rows written.
    pub viewers: usize,
}

const DISTRICTS: [&str; 16] = [
    "东城", "西城", "南湖", "北山", "江滨", "河西", "新城", "高新", "临港", "青山", "白云", "金沙",
    "龙泉", "花溪", "石桥", "枫林",
];
const TOPICS: [&str; 8] = [
    "党的创新理论",
    "党史学习",
    "乡村振兴",
    "法治宣传",
    "文明风尚",
    "科学普及",
    "健康生活",
    "生态文明",
];
const FILMS: [&str; 12] = [
    "建国大业",
    "建党伟业",
    "长津湖",
    "我和我的祖国",
    "觉醒年代",
    "地道战",
    "英雄儿女",
    "上甘岭",
    "焦裕禄",
    "红海行动",
    "决胜时刻",
    "古田军号",
];

impl Catalog {
    /// Rows per multi-row INSERT: `postgres` on PostgreSQL, where each statement is a round
    /// trip; 100 on SQLite, whose parser looks each `$N` name up among the names it has
    /// already seen, so preparing a statement of thousands of rows takes quadratic time
    /// (a 3,443-row viewer insert took 2 s).
    fn rows_per_statement(&self, postgres: usize) -> usize {
        if self.is_postgres { postgres } else { 100 }
    }

    /// Writes sessions as given (ids are assigned in order); returns their ids.
    pub async fn insert_sessions(&self, rows: &[SessionFixture]) -> Result<Vec<i64>, CatalogError> {
        let mut tx = self.pool.begin().await?;
        let ids = self.insert_sessions_on(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(ids)
    }

    async fn insert_sessions_on(
        &self,
        tx: &mut AnyConnection,
        rows: &[SessionFixture],
    ) -> Result<Vec<i64>, CatalogError> {
        let (max,): (i64,) =
            sqlx::query_as("SELECT CAST(COALESCE(MAX(id), 0) AS BIGINT) FROM sessions")
                .fetch_one(&mut *tx)
                .await?;
        let mut ids = Vec::with_capacity(rows.len());
        let per_statement = self.rows_per_statement(2000);
        for (chunk_index, chunk) in rows.chunks(per_statement).enumerate() {
            let mut sql = String::from(
                "INSERT INTO sessions (id, channel, station_id, kind, title, source, started_at, \
                 ended_at, peak_viewers, in_person, film_id) VALUES ",
            );
            for i in 0..chunk.len() {
                let b = i * 9;
                if i > 0 {
                    sql.push(',');
                }
                sql += &format!(
                    "(${}, 'st-' || ${}, ${}, ${}, ${}, 'whip', ${}, ${}, ${}, ${}, ${})",
                    b + 1,
                    b + 2,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8,
                    b + 9
                );
            }
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for (i, r) in chunk.iter().enumerate() {
                let id = max + 1 + (chunk_index * per_statement + i) as i64;
                ids.push(id);
                q = q
                    .bind(id)
                    .bind(r.station_id)
                    .bind(r.kind.as_str())
                    .bind(r.title.clone())
                    .bind(r.started_at)
                    .bind(r.ended_at)
                    .bind(r.peak_viewers)
                    .bind(r.in_person)
                    .bind(r.film_id);
            }
            q.execute(&mut *tx).await?;
        }
        if self.is_postgres {
            sqlx::query("SELECT setval(pg_get_serial_sequence('sessions', 'id'), (SELECT MAX(id) FROM sessions))")
                .execute(&mut *tx)
                .await?;
        }
        Ok(ids)
    }

    /// Writes viewer rows as given (random ids, like the relay makes).
    pub async fn insert_viewers(&self, rows: &[ViewerFixture]) -> Result<(), CatalogError> {
        let mut tx = self.pool.begin().await?;
        self.insert_viewers_on(&mut tx, rows).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_viewers_on(
        &self,
        tx: &mut AnyConnection,
        rows: &[ViewerFixture],
    ) -> Result<(), CatalogError> {
        for chunk in rows.chunks(self.rows_per_statement(4000)) {
            let mut sql = String::from(
                "INSERT INTO viewers (id, session_id, joined_at, left_at, terminal, viewer_key, \
                 client_hash) VALUES ",
            );
            for i in 0..chunk.len() {
                let b = i * 6;
                if i > 0 {
                    sql.push(',');
                }
                sql += &format!(
                    "(${}, ${}, ${}, ${}, ${}, ${}, '')",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6
                );
            }
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for r in chunk {
                q = q
                    .bind((rand::random::<u64>() >> 1) as i64)
                    .bind(r.session_id)
                    .bind(r.joined_at)
                    .bind(r.left_at)
                    .bind(r.terminal)
                    .bind(r.viewer_key.clone());
            }
            q.execute(&mut *tx).await?;
        }
        Ok(())
    }

    /// Builds a demo city: hierarchy, topics, films, and `days` of sessions and viewers
    /// ending yesterday (Asia/Shanghai). Stations get random keys nobody knows; rotate one
    /// with `feiyan station rotate-key` to publish to it.
    pub async fn build_demo(
        &self,
        spec: &DemoSpec,
        mut progress: impl FnMut(&DemoReport),
    ) -> Result<DemoReport, CatalogError> {
        if spec.centers == 0 || spec.institutes < spec.centers || spec.stations < spec.institutes {
            return Err(CatalogError::Invalid {
                field: "demo size",
                reason: "need 1 <= centers <= institutes <= stations".into(),
            });
        }
        let mut rng = StdRng::seed_from_u64(spec.seed);
        let mut report = DemoReport::default();
        for t in TOPICS {
            let _ = self.add_topic(t).await;
        }
        let mut film_ids = Vec::new();
        for f in FILMS {
            match self.add_film(f).await {
                Ok(id) => film_ids.push(id.0),
                Err(CatalogError::Invalid { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        if film_ids.is_empty() {
            film_ids = self.films().await?.into_iter().map(|f| f.id).collect();
        }
        // Hierarchy, in one transaction.
        let mut station_ids = Vec::with_capacity(spec.stations);
        {
            let mut tx = self.pool.begin().await?;
            let mut institute_ids: Vec<InstituteId> = Vec::new();
            for c in 0..spec.centers {
                let name = format!(
                    "{}区新时代文明实践中心{}",
                    DISTRICTS[c % DISTRICTS.len()],
                    if c >= DISTRICTS.len() {
                        format!("（{}）", c + 1)
                    } else {
                        String::new()
                    }
                );
                let (center_id,): (i64,) =
                    sqlx::query_as("INSERT INTO centers (name) VALUES ($1) RETURNING id")
                        .bind(name)
                        .fetch_one(&mut *tx)
                        .await?;
                let center_id = CenterId(center_id);
                let here = spec.institutes / spec.centers
                    + usize::from(c < spec.institutes % spec.centers);
                for i in 0..here {
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO institutes (center_id, name) VALUES ($1, $2) RETURNING id",
                    )
                    .bind(center_id.0)
                    .bind(format!("第{}街道新时代文明实践所", i + 1))
                    .fetch_one(&mut *tx)
                    .await?;
                    institute_ids.push(InstituteId(id));
                }
            }
            let n_inst = institute_ids.len();
            for (k, institute_id) in institute_ids.iter().enumerate() {
                let here = spec.stations / n_inst + usize::from(k < spec.stations % n_inst);
                for s in 0..here {
                    let (id,): (i64,) = sqlx::query_as(
                        "INSERT INTO stations (institute_id, name, address, stream_key_hash, created_at) \
                         VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    )
                    .bind(institute_id.0)
                    .bind(format!("第{}社区新时代文明实践站", s + 1))
                    .bind(format!("{}号", rng.random_range(1..300)))
                    .bind(hash_key(&format!("demo-{}", rng.random::<u64>())))
                    .bind(now_ms())
                    .fetch_one(&mut *tx)
                    .await?;
                    sqlx::query("INSERT INTO channels (name, station_id) VALUES ($1, $2)")
                        .bind(format!("st-{id}"))
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    station_ids.push(id);
                }
            }
            tx.commit().await?;
        }
        report.stations = station_ids.len();
        progress(&report);
        // Sessions and viewers, one day at a time so memory stays small, on one connection
        // committing about every 500,000 viewer rows. On SQLite that connection gets a
        // 1 GiB page cache while it runs: viewer ids are random, so every insert touches
        // its own page of the id index, and with a small cache each commit rewrites most of
        // that index through the WAL.
        let mut conn = self.pool.acquire().await?;
        if !self.is_postgres {
            sqlx::query("PRAGMA cache_size=-1048576")
                .execute(&mut *conn)
                .await?;
        }
        let mut tx = conn.begin().await?;
        let mut uncommitted = 0;
        let today = super::shanghai_day(now_ms());
        for d in (1..=spec.days).rev() {
            let day = today - chrono::Duration::days(d as i64);
            let midnight = shanghai_midnight_ms(day);
            let mut sessions = Vec::new();
            for &station in &station_ids {
                // About two sessions a week per station.
                if !rng.random_bool(0.3) {
                    continue;
                }
                let roll: f64 = rng.random();
                let (kind, film) = if roll < 0.6 {
                    (SessionKind::Lecture, None)
                } else if roll < 0.9 {
                    (
                        SessionKind::FilmClass,
                        Some(film_ids[rng.random_range(0..film_ids.len())]),
                    )
                } else {
                    (SessionKind::Other, None)
                };
                // Mostly 09:00-20:00; a few late film classes run past midnight.
                let hour = if kind == SessionKind::FilmClass && rng.random_bool(0.05) {
                    23
                } else {
                    rng.random_range(9..21)
                };
                let start = midnight + hour * 3_600_000 + rng.random_range(0..60) * 60_000;
                let length = rng.random_range(40..130) * 60_000;
                sessions.push(SessionFixture {
                    station_id: station,
                    kind,
                    title: format!("{}第{}期", kind_title(kind), rng.random_range(1..200)),
                    started_at: start,
                    ended_at: Some(start + length),
                    peak_viewers: 0,
                    in_person: rng.random_range(8..80),
                    film_id: film,
                });
            }
            // Audience: a long-tailed count, residents drawn from the station's own pool
            // so the same people come back; one in ten rejoins after a drop.
            let mut plans = Vec::with_capacity(sessions.len());
            for s in sessions.iter_mut() {
                let base: f64 = rng.random::<f64>().powi(3);
                let n = (base * 60.0) as usize + rng.random_range(0..8);
                let n = if spec.audience == 1.0 {
                    n
                } else {
                    (n as f64 * spec.audience).round() as usize
                };
                s.peak_viewers = (n as f64 * 0.7).ceil() as i64;
                plans.push(n);
            }
            let ids = self.insert_sessions_on(&mut tx, &sessions).await?;
            let mut viewers = Vec::new();
            for ((s, id), n) in sessions.iter().zip(&ids).zip(plans) {
                let (start, end) = (s.started_at, s.ended_at.unwrap_or(s.started_at));
                for _ in 0..n {
                    let person = rng.random_range(0..400);
                    let terminal = match rng.random_range(0..100) {
                        0..70 => "mobile",
                        70..85 => "pc",
                        85..95 => "tv",
                        _ => "other",
                    };
                    let joined = rng.random_range(start..end);
                    let left = rng.random_range(joined..=end);
                    let key = format!("{}-{person}", s.station_id);
                    if rng.random_bool(0.1) && left + 60_000 < end {
                        let back = rng.random_range(left + 60_000..=end);
                        viewers.push(ViewerFixture {
                            session_id: *id,
                            joined_at: back,
                            left_at: Some(end),
                            terminal,
                            viewer_key: key.clone(),
                        });
                    }
                    viewers.push(ViewerFixture {
                        session_id: *id,
                        joined_at: joined,
                        left_at: Some(left),
                        terminal,
                        viewer_key: key,
                    });
                }
            }
            self.insert_viewers_on(&mut tx, &viewers).await?;
            report.sessions += sessions.len();
            report.viewers += viewers.len();
            uncommitted += viewers.len();
            if uncommitted > 500_000 {
                tx.commit().await?;
                tx = conn.begin().await?;
                uncommitted = 0;
            }
            progress(&report);
        }
        tx.commit().await?;
        if !self.is_postgres {
            sqlx::query("PRAGMA cache_size=-65536")
                .execute(&mut *conn)
                .await?;
        }
        Ok(report)
    }
}

const SPEAKERS: [&str; 8] = [
    "王老师",
    "李书记",
    "张主任",
    "刘教授",
    "陈站长",
    "杨老师",
    "赵讲师",
    "黄队长",
];

impl Catalog {
    /// The demo city's programme: for today and the `days - 1` days after it
    /// (Asia/Shanghai), about two planned lectures a week per station, 09:00-20:00 (those
    /// already past today are left out). Lectures only: a film class would be played by
    /// a running server at its time, and the demo films have no files. Returns how many
    /// items it wrote.
    pub async fn build_demo_programme(
        &self,
        days: usize,
        seed: u64,
    ) -> Result<usize, CatalogError> {
        let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_0025);
        let stations: Vec<(i64,)> = sqlx::query_as("SELECT id FROM stations ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        let topics: Vec<i64> = self.topics().await?.into_iter().map(|t| t.id).collect();
        let now = now_ms();
        let today = super::shanghai_day(now);
        let mut rows: Vec<(i64, String, &'static str, Option<i64>, i64)> = Vec::new();
        for d in 0..days {
            let midnight = shanghai_midnight_ms(today + chrono::Duration::days(d as i64));
            for &(station,) in &stations {
                if !rng.random_bool(0.3) {
                    continue;
                }
                let at = midnight
                    + rng.random_range(9..21) * 3_600_000
                    + rng.random_range(0..4) * 15 * 60_000;
                let topic = (!topics.is_empty()).then(|| topics[rng.random_range(0..topics.len())]);
                let title = format!("理论宣讲第{}期", rng.random_range(1..200));
                let speaker = SPEAKERS[rng.random_range(0..SPEAKERS.len())];
                if at > now {
                    rows.push((station, title, speaker, topic, at));
                }
            }
        }
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        for chunk in rows.chunks(self.rows_per_statement(1000)) {
            // `$1` is the creation time; each row's five values follow.
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = 1 + i * 5;
                    format!(
                        "('lecture', ${}, ${}, ${}, ${}, ${}, $1, $1)",
                        b + 1,
                        b + 2,
                        b + 3,
                        b + 4,
                        b + 5
                    )
                })
                .collect();
            let sql = format!(
                "INSERT INTO planned_items (kind, station_id, title, speaker, topic_id, \
                 starts_at, created_at, updated_at) VALUES {}",
                values.join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(now);
            for (station, title, speaker, topic, at) in chunk {
                q = q
                    .bind(*station)
                    .bind(title.clone())
                    .bind(*speaker)
                    .bind(*topic)
                    .bind(*at);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(rows.len())
    }
}

fn kind_title(kind: SessionKind) -> &'static str {
    match kind {
        SessionKind::Lecture => "理论宣讲",
        SessionKind::FilmClass => "电影党史课",
        SessionKind::Other => "文明实践活动",
    }
}
