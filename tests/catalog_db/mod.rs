//! A fresh catalog database per test, on SQLite (a temp file) or on the machine's
//! PostgreSQL (a new `feiyan_test_<random>` database, dropped afterwards).
//!
//! PostgreSQL is reached through `FEIYAN_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`); `scripts/test.sh` makes sure it runs. A test
//! that cannot reach it fails: it is never skipped quietly.
#![allow(dead_code)]

use feiyan::catalog::{Catalog, NewStation, SessionKind, SessionSource, ViewerFixture};
use feiyan::ids::SessionId;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

pub struct TestDb {
    pub catalog: Catalog,
    pub url: String,
    /// Server URL and database name to drop, for PostgreSQL.
    postgres: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

pub fn postgres_admin_url() -> String {
    std::env::var("FEIYAN_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub async fn sqlite() -> TestDb {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/catalog.db", dir.path().display());
    let catalog = Catalog::connect(&url).await.expect("sqlite catalog");
    TestDb {
        catalog,
        url,
        postgres: None,
        _dir: Some(dir),
    }
}

pub async fn postgres() -> TestDb {
    let admin = postgres_admin_url();
    let name = format!("feiyan_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {admin} is not reachable ({e}); run ./scripts/deps.sh or set FEIYAN_TEST_POSTGRES_URL")
    });
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let _ = conn.close().await;
    let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
    let url = format!("{base}/{name}");
    let catalog = Catalog::connect(&url).await.expect("postgres catalog");
    TestDb {
        catalog,
        url,
        postgres: Some((admin, name)),
        _dir: None,
    }
}

impl TestDb {
    /// Drops the PostgreSQL database (call at the end of a passing test; a failing test
    /// leaves it behind for inspection, named feiyan_test_*).
    pub async fn finish(self) {
        let TestDb {
            catalog, postgres, ..
        } = self;
        drop(catalog);
        if let Some((admin, name)) = postgres {
            let mut conn = PgConnection::connect(&admin).await.expect("reconnect");
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await
            .expect("drop test database");
        }
    }
}

/// Opens a lecture of `station` published over WHIP, titled 讲座, started at `at_ms`.
pub async fn open_lecture(catalog: &Catalog, station: &NewStation, at_ms: i64) -> SessionId {
    catalog
        .open_session(
            &station.channel,
            station.station_id,
            SessionKind::Lecture,
            "讲座",
            SessionSource::Whip,
            at_ms,
        )
        .await
        .unwrap()
}

/// A PC viewer of session `session_id` who joined at `joined_at` and has not left.
pub fn open_viewer(session_id: i64, joined_at: i64, key: &str) -> ViewerFixture {
    ViewerFixture {
        session_id,
        joined_at,
        left_at: None,
        terminal: "pc",
        viewer_key: key.into(),
    }
}

/// When the relay node `node` was last seen alive, by the database's clock.
pub async fn node_seen_at(pool: &sqlx::AnyPool, node: i64) -> i64 {
    let (at,): (i64,) = sqlx::query_as("SELECT seen_at FROM relay_nodes WHERE id = $1")
        .bind(node)
        .fetch_one(pool)
        .await
        .unwrap();
    at
}
