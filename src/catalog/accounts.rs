//! Administrator accounts: argon2 password hashes, login tokens (stored as SHA-256 only)
//! and scopes that follow the hierarchy. Also the login throttle, which takes `now` as an
//! argument so tests drive it without sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use rand::RngCore;
use serde::Serialize;

use super::{Catalog, CatalogError, check_name, hash_key};
use crate::audience::now_ms;
use crate::ids::{CenterId, StationId};

/// An `accounts` row: id, username, role, center, station.
type AccountRow = (i64, String, String, Option<i64>, Option<i64>);

/// How long a login token stays valid.
pub const TOKEN_LIFETIME_MS: i64 = 12 * 3_600_000;

/// What an account may see and change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "role", content = "id", rename_all = "snake_case")]
pub enum Scope {
    /// City administrator: everything.
    City,
    /// Center administrator: one center's institutes and stations.
    Center(CenterId),
    /// Station operator: one station (key rotation, schedule, headcount).
    Station(StationId),
}

/// A logged-in account.
#[derive(Debug, Clone, Serialize)]
pub struct Account {
    /// Row id.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// What it may see.
    pub scope: Scope,
}

fn hash_password(password: &str) -> Result<String, CatalogError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| CatalogError::Invalid {
            field: "password",
            reason: format!("cannot hash: {e}"),
        })
}

fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A valid hash of a password nobody has, checked when the username is unknown so that
/// wrong usernames and wrong passwords take the same time.
fn dummy_hash() -> &'static str {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| hash_password("feiyan-no-such-user").unwrap_or_default())
}

impl Catalog {
    /// Creates an account. Center admins need `center_id`, station operators `station_id`.
    pub async fn add_account(
        &self,
        username: &str,
        password: &str,
        scope: Scope,
    ) -> Result<i64, CatalogError> {
        let username = check_name("username", username)?;
        if password.chars().count() < 8 {
            return Err(CatalogError::Invalid {
                field: "password",
                reason: "must be at least 8 characters".into(),
            });
        }
        let (role, center, station) = match scope {
            Scope::City => ("city", None, None),
            Scope::Center(c) => {
                let known: Option<(i64,)> = sqlx::query_as("SELECT id FROM centers WHERE id = $1")
                    .bind(c.0)
                    .fetch_optional(&self.pool)
                    .await?;
                if known.is_none() {
                    return Err(CatalogError::Invalid {
                        field: "center_id",
                        reason: format!("no center {c}"),
                    });
                }
                ("center", Some(c.0), None)
            }
            Scope::Station(s) => {
                self.station_placement(s).await?;
                ("station", None, Some(s.0))
            }
        };
        let existing: Option<(i64,)> =
            sqlx::query_as("SELECT id FROM accounts WHERE username = $1")
                .bind(&username)
                .fetch_optional(&self.pool)
                .await?;
        if existing.is_some() {
            return Err(CatalogError::Invalid {
                field: "username",
                reason: format!("{username:?} is taken"),
            });
        }
        let hash = hash_password(password)?;
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO accounts (username, password_hash, role, center_id, station_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(&username)
        .bind(hash)
        .bind(role)
        .bind(center)
        .bind(station)
        .bind(now_ms())
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Checks a username and password; on success issues a token valid for
    /// [`TOKEN_LIFETIME_MS`]. `None` means wrong username *or* password (callers must not
    /// say which).
    pub async fn login(
        &self,
        username: &str,
        password: &str,
        now_ms: i64,
    ) -> Result<Option<(String, Account)>, CatalogError> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT id, password_hash FROM accounts WHERE username = $1")
                .bind(username.trim())
                .fetch_optional(&self.pool)
                .await?;
        let (id, hash) = row.unwrap_or((0, dummy_hash().to_string()));
        let password = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
            .await
            .unwrap_or(false);
        if !ok || id == 0 {
            return Ok(None);
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = hex::encode(bytes);
        sqlx::query("DELETE FROM auth_tokens WHERE expires_at < $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO auth_tokens (token_hash, account_id, expires_at) VALUES ($1, $2, $3)",
        )
        .bind(hash_key(&token))
        .bind(id)
        .bind(now_ms + TOKEN_LIFETIME_MS)
        .execute(&self.pool)
        .await?;
        Ok(self
            .account_for_token(&token, now_ms)
            .await?
            .map(|a| (token, a)))
    }

    /// The account a token belongs to, if the token is known and not expired.
    pub async fn account_for_token(
        &self,
        token: &str,
        now_ms: i64,
    ) -> Result<Option<Account>, CatalogError> {
        let row: Option<AccountRow> = sqlx::query_as(
            "SELECT a.id, a.username, a.role, a.center_id, a.station_id FROM auth_tokens t \
             JOIN accounts a ON a.id = t.account_id WHERE t.token_hash = $1 AND t.expires_at > $2",
        )
        .bind(hash_key(token))
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.and_then(|(id, username, role, center, station)| {
            let scope = match (role.as_str(), center, station) {
                ("city", _, _) => Scope::City,
                ("center", Some(c), _) => Scope::Center(CenterId(c)),
                ("station", _, Some(s)) => Scope::Station(StationId(s)),
                _ => return None,
            };
            Some(Account {
                id,
                username,
                scope,
            })
        }))
    }

    /// Ends a token (logout).
    pub async fn logout(&self, token: &str) -> Result<(), CatalogError> {
        sqlx::query("DELETE FROM auth_tokens WHERE token_hash = $1")
            .bind(hash_key(token))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Accounts as (id, username, scope), for the CLI.
    pub async fn list_accounts(&self) -> Result<Vec<(i64, String, String)>, CatalogError> {
        let rows: Vec<AccountRow> = sqlx::query_as(
            "SELECT id, username, role, center_id, station_id FROM accounts ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, user, role, c, s)| {
                let scope = match (c, s) {
                    (Some(c), _) => format!("{role} {c}"),
                    (_, Some(s)) => format!("{role} {s}"),
                    _ => role,
                };
                (id, user, scope)
            })
            .collect())
    }
}

/// Failures allowed before logins from the same username and address are slowed down.
const FREE_FAILURES: u32 = 3;
/// Longest wait imposed.
const MAX_DELAY: Duration = Duration::from_secs(300);
/// Entries kept at most; the oldest quiet ones are dropped beyond that.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    blocked_until: Instant,
    last: Instant,
}

/// Slows down password guessing per (username, client address): after three failures each
/// further attempt must wait 2 s, 4 s, 8 s ... up to 5 min. A success clears the entry.
#[derive(Debug, Default)]
pub struct LoginThrottle {
    /// Never held across an `.await`: every method is synchronous, so a std mutex is right.
    entries: Mutex<HashMap<(String, String), Failures>>,
}

impl LoginThrottle {
    /// `Err(wait)` when this key must wait before trying again.
    pub fn check(&self, username: &str, client: &str, now: Instant) -> Result<(), Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(&(username.to_string(), client.to_string())) {
            Some(f) if f.blocked_until > now => Err(f.blocked_until - now),
            _ => Ok(()),
        }
    }

    /// Records a failed attempt; returns how long the next attempt must wait.
    pub fn failed(&self, username: &str, client: &str, now: Instant) -> Duration {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= MAX_ENTRIES {
            let cutoff = now.checked_sub(MAX_DELAY * 2).unwrap_or(now);
            entries.retain(|_, f| f.last > cutoff);
        }
        let f = entries
            .entry((username.to_string(), client.to_string()))
            .or_insert(Failures {
                count: 0,
                blocked_until: now,
                last: now,
            });
        f.count += 1;
        f.last = now;
        let delay = if f.count <= FREE_FAILURES {
            Duration::ZERO
        } else {
            let doublings = (f.count - FREE_FAILURES - 1).min(16);
            (Duration::from_secs(2) * 2u32.pow(doublings)).min(MAX_DELAY)
        };
        f.blocked_until = now + delay;
        delay
    }

    /// Clears the key after a successful login.
    pub fn succeeded(&self, username: &str, client: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.remove(&(username.to_string(), client.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_backs_off_and_clears() {
        let t = LoginThrottle::default();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(t.check("a", "1.2.3.4", t0).is_ok());
            assert_eq!(t.failed("a", "1.2.3.4", t0), Duration::ZERO);
        }
        assert_eq!(t.failed("a", "1.2.3.4", t0), Duration::from_secs(2));
        assert!(t.check("a", "1.2.3.4", t0).is_err());
        // Another address or username is not affected.
        assert!(t.check("a", "5.6.7.8", t0).is_ok());
        assert!(t.check("b", "1.2.3.4", t0).is_ok());
        let t1 = t0 + Duration::from_secs(2);
        assert!(t.check("a", "1.2.3.4", t1).is_ok());
        assert_eq!(t.failed("a", "1.2.3.4", t1), Duration::from_secs(4));
        assert_eq!(
            t.check("a", "1.2.3.4", t1 + Duration::from_millis(500)),
            Err(Duration::from_millis(3500))
        );
        let t2 = t1 + Duration::from_secs(4);
        assert_eq!(t.failed("a", "1.2.3.4", t2), Duration::from_secs(8));
        t.succeeded("a", "1.2.3.4");
        assert!(t.check("a", "1.2.3.4", t2).is_ok());
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        assert!(!verify_password("x", "not a hash"));
    }
}
