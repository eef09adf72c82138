//! The catalog: hierarchy (centers, institutes, stations), channels, live sessions,
//! viewer attendance, replays (recordings and who watched them) and planned items (the
//! programme: planned lectures and film classes), on SQLite (default, embedded) or PostgreSQL through `sqlx::Any`.
//!
//! Times are stored as unix milliseconds (UTC) so both databases agree byte for byte.
//! Stream keys are stored as SHA-256 hashes only; the clear key is shown once at creation.

mod films;
mod sources;

pub use films::{Film, NewFilm, Screening, ScreeningStatus, UnknownScreeningStatus};
pub use sources::{PullSource, SOURCE_SCHEMES, source_scheme};

mod accounts;
mod cluster;
mod demo;
mod directory;
mod hierarchy;
mod interaction;
mod nodes;
mod planned;
mod programme;
mod ratings;
mod recordings;
mod requests;
mod sessions;
mod spill;
mod stats;
mod writer;

pub use accounts::{
    Account, LoginThrottle, MAX_PASSWORD_CHARS, PasswordChecks, Scope, TOKEN_LIFETIME_MS,
    check_login_lengths,
};
pub use cluster::{ClusterNode, NodeLoad, Origin};
pub use demo::{DemoReport, DemoSpec, SessionFixture, ViewerFixture};
pub use directory::{
    DirectoryCenter, DirectoryCenterDetail, DirectoryInstitute, DirectoryStation, IdName,
    StationHit,
};
pub use hierarchy::{CreatedStation, ImportReport, Node, Placement, parse_csv, write_csv_record};
pub use interaction::{InteractionCounts, InteractionResume, InteractionWrite, StoredMessage};
pub use planned::{
    ATTACH_WINDOW_MS, ItemChange, ItemFilm, ItemKind, ItemStation, ItemStatus, LiveSession,
    NewLecture, PROGRAMME_MAX_DAYS, PROGRAMME_MAX_ITEMS, PlannedItem, Programme, ProgrammeLevel,
    ProgrammeQuery, RecentSession, StationCard, StationPage,
};
pub use programme::{Named, SessionInfo, SessionUpdate};
pub use ratings::{MAX_COMMENT_CHARS, Rating, RatingSummary, check_rating};
pub use recordings::{NewRecording, Recording, RecordingKind, ReplayView};
pub use requests::{
    MAX_OPEN_PER_DEVICE, MenuItem, MyRequest, NewMenuItem, NewRequest, PHONE_KEEP_MS, RequestCount,
    RequestGroup, RequestScope, RequestStatsRow, RequestStatus, ServiceRequest, check_phone,
    mask_phone,
};
pub use sessions::{SessionKind, SessionSource, SessionSummary};
pub use spill::{DEAD_LETTER_FILE, SPILL_FILE};
#[doc(hidden)]
pub use stats::parse_copy_rows;
pub use stats::{
    GroupBy, Level, Period, RatingGroup, RatingRow, SessionStats, StatsQuery, StatsRow, Terminals,
    shanghai_day, shanghai_midnight_ms,
};
pub use writer::{AttendanceWriter, WriterConfig, panic_message, spawn_writer};

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::AnyPool;
use sqlx::AssertSqlSafe;
use sqlx::any::AnyPoolOptions;

use crate::audience::{AttendanceCounters, now_ms};
use crate::ids::{ChannelName, StationId};

/// Catalog failures. `Database` is the server's fault; the others are the caller's.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The channel does not exist.
    #[error("unknown channel {0}")]
    UnknownChannel(String),
    /// The station does not exist.
    #[error("unknown station {0}")]
    UnknownStation(String),
    /// The stream key does not match the channel's station.
    #[error("wrong stream key for channel {0}")]
    WrongKey(String),
    /// A name was empty or too long.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Which input.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The row is in a state that forbids the change (e.g. stopping a screening that
    /// already ended); the message says what is possible instead.
    #[error("{0}")]
    Conflict(String),
    /// The row the caller named (a recording id, a session id) does not exist; the message
    /// names it.
    #[error("{0}")]
    NotFound(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// No password check was free in time (or the pool is gone); retry in a moment.
    #[error("{0}")]
    Busy(String),
    /// The SQLite file's directory could not be created.
    #[error("cannot create database directory: {0}")]
    Io(#[from] std::io::Error),
}

/// A station just created: the clear stream key is only ever here.
#[derive(Debug, Clone, Serialize)]
pub struct NewStation {
    /// Row id.
    pub station_id: StationId,
    /// The station's channel.
    pub channel: ChannelName,
    /// The clear stream key, shown once.
    pub stream_key: String,
}

/// A station as listed by the CLI and API.
#[derive(Debug, Clone, Serialize)]
pub struct StationRow {
    /// Row id.
    pub id: StationId,
    /// Center name.
    pub center: String,
    /// Institute name.
    pub institute: String,
    /// Station name.
    pub name: String,
    /// Its channel.
    pub channel: String,
}

/// Who owns a channel, for pages and API answers.
#[derive(Debug, Clone, Serialize)]
pub struct ChannelOwner {
    /// Station row id.
    pub station_id: StationId,
    /// Station name.
    pub station: String,
    /// Institute name.
    pub institute: String,
    /// Center name.
    pub center: String,
}

/// RFC 3339 text for unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// SHA-256 hex of a stream key (keys are 128-bit random, so a fast hash is enough).
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn new_stream_key() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    format!("fy_{}", hex::encode(bytes))
}

fn check_name(field: &'static str, value: &str) -> Result<String, CatalogError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > 200 {
        return Err(CatalogError::Invalid {
            field,
            reason: "must be 1 to 200 characters".into(),
        });
    }
    Ok(value.to_string())
}

/// Handle to the catalog database; cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    pool: AnyPool,
    /// On PostgreSQL, a second, native pool for reads of many rows (statistics by
    /// station): the `Any` driver converts every column of every row into its own value
    /// first, which for a ranking of every station was most of its time.
    rows: Option<sqlx::PgPool>,
    /// PostgreSQL needs a few extra statements (serial sequences after bulk inserts).
    is_postgres: bool,
    /// This server's `relay_nodes` row once [`Catalog::register_node`] made it; 0 before.
    node: Arc<AtomicI64>,
    /// Set once the server is a cluster member ([`Catalog::join_cluster`]): the
    /// `[cluster] gone_after_secs` in ms; 0 for a single server (no claims, no leases).
    member_gone_after_ms: Arc<AtomicI64>,
    /// The attendance writer's figures, here so `/metrics` finds them beside the catalog.
    attendance: Arc<AttendanceCounters>,
}

impl Catalog {
    /// Connects (creating a SQLite file and its directory when missing) and applies
    /// migrations.
    pub async fn connect(url: &str) -> Result<Catalog, CatalogError> {
        sqlx::any::install_default_drivers();
        let is_sqlite = url.starts_with("sqlite:");
        let url = if is_sqlite {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or(path);
            if path != ":memory:"
                && let Some(dir) = Path::new(path).parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)?;
            }
            if url.contains('?') {
                url.to_string()
            } else {
                format!("{url}?mode=rwc")
            }
        } else {
            url.to_string()
        };
        let mut options = AnyPoolOptions::new().max_connections(if is_sqlite { 4 } else { 10 });
        if is_sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    sqlx::query("PRAGMA journal_mode=WAL")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA busy_timeout=5000")
                        .execute(&mut *conn)
                        .await?;
                    sqlx::query("PRAGMA foreign_keys=ON")
                        .execute(&mut *conn)
                        .await?;
                    // 64 MiB page cache: freezing figures and rebuilding rollups read
                    // viewer and session pages all over their tables; the 2 MiB default
                    // makes a city-year of them crawl.
                    sqlx::query("PRAGMA cache_size=-65536")
                        .execute(&mut *conn)
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options.connect(&url).await?;
        if is_sqlite {
            sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        } else {
            sqlx::migrate!("migrations/postgres").run(&pool).await?;
        }
        let rows = if is_sqlite {
            None
        } else {
            Some(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(4)
                    .connect_lazy(&url)?,
            )
        };
        Ok(Catalog {
            pool,
            rows,
            is_postgres: !is_sqlite,
            node: Arc::default(),
            member_gone_after_ms: Arc::default(),
            attendance: Arc::default(),
        })
    }

    /// Refreshes the query planner's statistics (after bulk loads such as demo data). On
    /// PostgreSQL it vacuums too, as autovacuum would a while after the load: that sets
    /// the visibility map, without which no index-only scan is chosen (the edge days of a
    /// province-wide range then read the heap instead of the index).
    pub async fn analyze(&self) -> Result<(), CatalogError> {
        let sql = if self.is_postgres {
            "VACUUM ANALYZE"
        } else {
            "ANALYZE"
        };
        // The simple query protocol: VACUUM cannot run as a prepared statement's
        // implicit transaction.
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The attendance writer's figures (queue depth, spilled, replayed, refused).
    pub fn attendance_counters(&self) -> &AttendanceCounters {
        &self.attendance
    }

    /// The pool, for the audience writer.
    pub(crate) fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Creates the center, institute and station (whichever are missing) and the station's
    /// channel, returning the clear stream key.
    pub async fn add_station(
        &self,
        center: &str,
        institute: &str,
        name: &str,
    ) -> Result<NewStation, CatalogError> {
        let center = check_name("center", center)?;
        let institute = check_name("institute", institute)?;
        let name = check_name("station name", name)?;
        let stream_key = new_stream_key();
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO centers (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
            .bind(&center)
            .execute(&mut *tx)
            .await?;
        let (center_id,): (i64,) = sqlx::query_as("SELECT id FROM centers WHERE name = $1")
            .bind(&center)
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO institutes (center_id, name) VALUES ($1, $2) \
             ON CONFLICT (center_id, name) DO NOTHING",
        )
        .bind(center_id)
        .bind(&institute)
        .execute(&mut *tx)
        .await?;
        let (institute_id,): (i64,) =
            sqlx::query_as("SELECT id FROM institutes WHERE center_id = $1 AND name = $2")
                .bind(center_id)
                .bind(&institute)
                .fetch_one(&mut *tx)
                .await?;
        let existing: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM stations WHERE institute_id = $1 AND name = $2")
                .bind(institute_id)
                .bind(&name)
                .fetch_optional(&mut *tx)
                .await?;
        if existing.is_some() {
            return Err(CatalogError::Invalid {
                field: "station name",
                reason: format!(
                    "station {name:?} already exists in {center}/{institute}; use `feiyan station rotate-key` for a new key"
                ),
            });
        }
        let (station_id,): (i64,) = sqlx::query_as(
            "INSERT INTO stations (institute_id, name, stream_key_hash, created_at) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(institute_id)
        .bind(&name)
        .bind(hash_key(&stream_key))
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await?;
        let station_id = StationId(station_id);
        let channel = ChannelName::for_station(station_id);
        sqlx::query("INSERT INTO channels (name, station_id) VALUES ($1, $2)")
            .bind(channel.as_str())
            .bind(station_id.0)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(NewStation {
            station_id,
            channel,
            stream_key,
        })
    }

    /// Every station with its place in the hierarchy and its channel.
    pub async fn list_stations(&self) -> Result<Vec<StationRow>, CatalogError> {
        let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(
            "SELECT s.id, c.name, i.name, s.name, COALESCE(ch.name, '') \
             FROM stations s JOIN institutes i ON i.id = s.institute_id \
             JOIN centers c ON c.id = i.center_id \
             LEFT JOIN channels ch ON ch.station_id = s.id ORDER BY s.id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, center, institute, name, channel)| StationRow {
                id: StationId(id),
                center,
                institute,
                name,
                channel,
            })
            .collect())
    }

    /// Replaces a station's stream key (by station id or channel name); returns the new
    /// clear key. The old key stops working at once for new publishes, and the station's
    /// pull sources are held until the station enables them with the new key.
    pub async fn rotate_key(&self, station_or_channel: &str) -> Result<String, CatalogError> {
        let station_id = self.resolve_station(station_or_channel).await?;
        let key = new_stream_key();
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE stations SET stream_key_hash = $1 WHERE id = $2")
            .bind(hash_key(&key))
            .bind(station_id.0)
            .execute(&mut *tx)
            .await?;
        // Whoever held the old key may have added sources: they wait for the new key.
        sources::hold_station_sources(&mut tx, station_id).await?;
        tx.commit().await?;
        Ok(key)
    }

    async fn resolve_station(&self, station_or_channel: &str) -> Result<StationId, CatalogError> {
        let row: Option<(i64,)> = if let Ok(id) = station_or_channel.parse::<i64>() {
            sqlx::query_as("SELECT id FROM stations WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
        } else {
            sqlx::query_as("SELECT station_id FROM channels WHERE name = $1")
                .bind(station_or_channel)
                .fetch_optional(&self.pool)
                .await?
        };
        row.map(|(id,)| StationId(id))
            .ok_or_else(|| CatalogError::UnknownStation(station_or_channel.to_string()))
    }

    /// Who owns `channel`, or `UnknownChannel`.
    pub async fn channel_owner(&self, channel: &ChannelName) -> Result<ChannelOwner, CatalogError> {
        let row: Option<(i64, String, String, String)> = sqlx::query_as(
            "SELECT s.id, s.name, i.name, c.name FROM channels ch \
             JOIN stations s ON s.id = ch.station_id \
             JOIN institutes i ON i.id = s.institute_id \
             JOIN centers c ON c.id = i.center_id WHERE ch.name = $1",
        )
        .bind(channel.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let (station_id, station, institute, center) =
            row.ok_or_else(|| CatalogError::UnknownChannel(channel.to_string()))?;
        Ok(ChannelOwner {
            station_id: StationId(station_id),
            station,
            institute,
            center,
        })
    }

    /// Checks a publisher's stream key against the channel's station.
    pub async fn authorize_publisher(
        &self,
        channel: &ChannelName,
        key: &str,
    ) -> Result<ChannelOwner, CatalogError> {
        let owner = self.channel_owner(channel).await?;
        let (hash,): (String,) =
            sqlx::query_as("SELECT stream_key_hash FROM stations WHERE id = $1")
                .bind(owner.station_id.0)
                .fetch_one(&self.pool)
                .await?;
        // Both sides are fixed-length hex digests of the inputs, so comparing them leaks
        // nothing useful about the key through timing.
        if hash != hash_key(key) {
            return Err(CatalogError::WrongKey(channel.to_string()));
        }
        Ok(owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stations_keys_and_sessions_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/c.db", dir.path().display());
        let catalog = Catalog::connect(&url).await.unwrap();
        let a = catalog.add_station("一中心", "一所", "一站").await.unwrap();
        let b = catalog.add_station("一中心", "一所", "二站").await.unwrap();
        assert_ne!(a.channel, b.channel);
        assert!(catalog.add_station("一中心", "一所", "一站").await.is_err());
        assert!(
            catalog
                .authorize_publisher(&a.channel, &a.stream_key)
                .await
                .is_ok()
        );
        assert!(matches!(
            catalog.authorize_publisher(&a.channel, &b.stream_key).await,
            Err(CatalogError::WrongKey(_))
        ));
        let rotated = catalog.rotate_key(a.channel.as_str()).await.unwrap();
        assert!(
            catalog
                .authorize_publisher(&a.channel, &a.stream_key)
                .await
                .is_err()
        );
        assert!(
            catalog
                .authorize_publisher(&a.channel, &rotated)
                .await
                .is_ok()
        );
        let list = catalog.list_stations().await.unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].center, "一中心");
        let id = catalog
            .open_session(
                &a.channel,
                a.station_id,
                SessionKind::Lecture,
                "t",
                SessionSource::Whip,
                1_000,
            )
            .await
            .unwrap();
        let summary = catalog.session_summary(id, 2_000).await.unwrap().unwrap();
        assert!(summary.live);
        assert_eq!(summary.kind, SessionKind::Lecture);
    }
}
