//! Administrator accounts: argon2 password hashes, login tokens (stored as SHA-256 only)
//! and scopes that follow the hierarchy. Also what keeps logins from taking the server
//! down: the bounded pool password checks run on ([`PasswordChecks`]), and the login
//! throttle, which takes `now` as an argument so tests drive it without sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, phc::PasswordHash};
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

/// Whether `password` matches the PHC string `hash`, computed in `memory`, which is grown
/// to the hash's size and kept by the caller: a password check thread reuses its 19 MiB
/// for every check. (Allocating it per check, as argon2's `verify_password` does, made
/// the glibc heap of the test process grow by 19 MiB per login, seen with
/// `tests/login_pool.rs`.) The comparison is constant-time (`Output`'s `PartialEq`).
fn verify_password_in(password: &str, hash: &str, memory: &mut Vec<argon2::Block>) -> bool {
    use argon2::password_hash::phc::Output;
    use argon2::{Algorithm, Params, Version};
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm.as_str()),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    memory.resize(params.block_count(), argon2::Block::default());
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    argon
        .hash_password_into_with_memory(
            password.as_bytes(),
            salt.as_ref(),
            &mut out,
            &mut memory[..],
        )
        .is_ok()
        && Output::new(&out).is_ok_and(|o| o == expected)
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
        if !(8..=MAX_PASSWORD_CHARS).contains(&password.chars().count()) {
            return Err(CatalogError::Invalid {
                field: "password",
                reason: format!("must be 8 to {MAX_PASSWORD_CHARS} characters"),
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

    /// Checks a username and password on `checks` (the bounded pool); on success issues a
    /// token valid for [`TOKEN_LIFETIME_MS`]. `None` means wrong username *or* password
    /// (callers must not say which); [`CatalogError::Busy`] when no check was free in
    /// time, and [`CatalogError::Invalid`] for a username or password longer than any
    /// account can have (refused before any lookup or hash).
    pub async fn login(
        &self,
        checks: &PasswordChecks,
        username: &str,
        password: &str,
        now_ms: i64,
    ) -> Result<Option<(String, Account)>, CatalogError> {
        check_login_lengths(username, password)?;
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT id, password_hash FROM accounts WHERE username = $1")
                .bind(username.trim())
                .fetch_optional(&self.pool)
                .await?;
        let (id, hash) = row.unwrap_or((0, dummy_hash().to_string()));
        let ok = checks.verify(password, hash).await?;
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

/// Longest username `POST /api/login` reads (the longest an account can have).
pub const MAX_USERNAME_CHARS: usize = 200;
/// Longest password an account may have and `POST /api/login` reads.
pub const MAX_PASSWORD_CHARS: usize = 256;

/// A username or password no account can have is [`CatalogError::Invalid`] (400), before
/// anything is looked up, counted or hashed.
pub fn check_login_lengths(username: &str, password: &str) -> Result<(), CatalogError> {
    if username.chars().count() > MAX_USERNAME_CHARS {
        return Err(CatalogError::Invalid {
            field: "username",
            reason: format!("longer than {MAX_USERNAME_CHARS} characters"),
        });
    }
    if password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(CatalogError::Invalid {
            field: "password",
            reason: format!("longer than {MAX_PASSWORD_CHARS} characters"),
        });
    }
    Ok(())
}

/// The bounded pool login password checks run on: each argon2 check holds 19 MiB and a
/// core for a while, so `at_once` threads (`fy-login-*`, `[http] login_checks`) do them;
/// a login that finds none free within `wait` is refused with [`CatalogError::Busy`]
/// (429) instead of queueing without end. Dedicated threads, not `spawn_blocking`: the
/// allocator keeps each thread's freed 19 MiB for its next check, so memory stays at
/// `at_once` checks' worth instead of one per blocking thread that ever hashed.
#[derive(Debug)]
pub struct PasswordChecks {
    /// One permit per worker that is free; a job carries its permit, so there are never
    /// more jobs than workers.
    permits: std::sync::Arc<tokio::sync::Semaphore>,
    /// How long a login waits for a permit.
    wait: Duration,
    /// Jobs to the workers; they stop when this is dropped.
    jobs: std::sync::mpsc::Sender<PasswordJob>,
}

/// One check: the password, the stored hash, where the answer goes, and the permit the
/// worker drops when done (so a client that hangs up frees nothing early).
type PasswordJob = (
    String,
    String,
    tokio::sync::oneshot::Sender<bool>,
    tokio::sync::OwnedSemaphorePermit,
);

impl PasswordChecks {
    /// A pool of `at_once` worker threads (at least 1), each login waiting at most `wait`.
    pub fn new(at_once: usize, wait: Duration) -> PasswordChecks {
        let at_once = at_once.max(1);
        let (jobs, rx) = std::sync::mpsc::channel::<PasswordJob>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..at_once {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("fy-login-{i}"))
                .spawn(move || {
                    let mut memory = Vec::new();
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                        let Ok((password, hash, answer, permit)) = job else {
                            return;
                        };
                        let _ = answer.send(verify_password_in(&password, &hash, &mut memory));
                        drop(permit);
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password check thread");
            }
        }
        PasswordChecks {
            permits: std::sync::Arc::new(tokio::sync::Semaphore::new(at_once)),
            wait,
            jobs,
        }
    }

    /// Whether `password` matches `hash`, checked by a free worker.
    async fn verify(&self, password: &str, hash: String) -> Result<bool, CatalogError> {
        let permit = tokio::time::timeout(self.wait, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| CatalogError::Busy("the server is busy checking other logins".into()))?
            .map_err(|_| CatalogError::Busy("the server is shutting down".into()))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send((password.to_string(), hash, tx, permit))
            .map_err(|_| CatalogError::Busy("no password check is running".into()))?;
        rx.await
            .map_err(|_| CatalogError::Busy("a password check failed".into()))
    }
}

/// Failures allowed per (username, client address) before each further one must wait.
const FREE_PER_PAIR: u32 = 3;
/// Failures allowed per client address, whatever the username (an attacker rotating
/// names), before it must wait.
const FREE_PER_CLIENT: u32 = 10;
/// Failures allowed per username, from any address (a guess spread over many
/// addresses), before it must wait.
const FREE_PER_USERNAME: u32 = 20;
/// Longest wait imposed.
const MAX_DELAY: Duration = Duration::from_secs(300);
/// Failures older than this are forgotten: a key quiet this long starts afresh.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Entries kept at most per map; beyond that quiet ones go first, then the oldest.
const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    /// Attempts not (yet) followed by a success.
    count: u32,
    /// When the last attempt was recorded.
    last: Instant,
}

impl Failures {
    /// When the next attempt may start, given `free` failures without a wait (the one
    /// after them starts the first wait, 2 s).
    fn next_allowed(&self, free: u32) -> Instant {
        if self.count <= free {
            return self.last;
        }
        let doublings = (self.count - free - 1).min(16);
        self.last + (Duration::from_secs(2) * 2u32.pow(doublings)).min(MAX_DELAY)
    }
}

/// Attempts per key, in a map of at most [`MAX_ENTRIES`].
#[derive(Debug)]
struct Attempts<K> {
    free: u32,
    entries: HashMap<K, Failures>,
}

impl<K: std::hash::Hash + Eq + Clone> Attempts<K> {
    fn new(free: u32) -> Self {
        Attempts {
            free,
            entries: HashMap::new(),
        }
    }

    fn wait(&self, key: &K, now: Instant) -> Option<Duration> {
        let f = self.entries.get(key)?;
        if now.saturating_duration_since(f.last) >= FORGET_AFTER {
            return None;
        }
        let allowed = f.next_allowed(self.free);
        (allowed > now).then(|| allowed - now)
    }

    fn record(&mut self, key: &K, now: Instant) {
        if !self.entries.contains_key(key) && self.entries.len() >= MAX_ENTRIES {
            self.entries
                .retain(|_, f| now.saturating_duration_since(f.last) < FORGET_AFTER);
            if self.entries.len() >= MAX_ENTRIES
                && let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone())
            {
                self.entries.remove(&oldest);
            }
        }
        let f = self.entries.entry(key.clone()).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.saturating_duration_since(f.last) >= FORGET_AFTER {
            f.count = 0;
        }
        f.count += 1;
        f.last = now;
    }

    /// Takes back one recorded attempt (one that was never checked, or succeeded).
    fn undo(&mut self, key: &K) {
        if let Some(f) = self.entries.get_mut(key) {
            f.count = f.count.saturating_sub(1);
            if f.count == 0 {
                self.entries.remove(key);
            }
        }
    }
}

/// What the throttle keeps; one lock for all three so a check and its record are one step.
#[derive(Debug)]
struct Limits {
    pairs: Attempts<(String, String)>,
    clients: Attempts<String>,
    usernames: Attempts<String>,
}

/// Slows down password guessing: per (username, client address) after 3 failures, per
/// client address after 10 (whatever the names), per username after 20 (from any
/// address), each further attempt must wait 2 s, 4 s, 8 s ... up to 5 min; a key quiet
/// for 15 min starts afresh. Every attempt
/// is recorded as a failure *before* its password is checked ([`LoginThrottle::attempt`]),
/// so guesses sent in parallel are all counted and only the allowed ones reach the hash;
/// a success takes its attempt back and clears the (username, address) pair. Each map
/// holds at most 10,000 entries, so rotating names or addresses cannot grow memory.
#[derive(Debug)]
pub struct LoginThrottle {
    /// Never held across an `.await`: every method is synchronous, so a std mutex is right.
    limits: Mutex<Limits>,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        LoginThrottle {
            limits: Mutex::new(Limits {
                pairs: Attempts::new(FREE_PER_PAIR),
                clients: Attempts::new(FREE_PER_CLIENT),
                usernames: Attempts::new(FREE_PER_USERNAME),
            }),
        }
    }
}

impl LoginThrottle {
    /// Starts an attempt: `Err(wait)` when the username, the address or the pair must
    /// wait; otherwise the attempt is recorded as a failure now, before any hash, and the
    /// caller reports how it ended with [`LoginThrottle::succeeded`] or
    /// [`LoginThrottle::not_checked`] (a wrong password needs no call).
    pub fn attempt(&self, username: &str, client: &str, now: Instant) -> Result<(), Duration> {
        let mut l = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        let pair = (username.to_string(), client.to_string());
        let (client, username) = (client.to_string(), username.to_string());
        let wait = [
            l.pairs.wait(&pair, now),
            l.clients.wait(&client, now),
            l.usernames.wait(&username, now),
        ]
        .into_iter()
        .flatten()
        .max();
        if let Some(wait) = wait {
            return Err(wait);
        }
        l.pairs.record(&pair, now);
        l.clients.record(&client, now);
        l.usernames.record(&username, now);
        Ok(())
    }

    /// The attempt's password was never checked (no check was free): it does not count.
    pub fn not_checked(&self, username: &str, client: &str) {
        let mut l = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        l.pairs.undo(&(username.to_string(), client.to_string()));
        l.clients.undo(&client.to_string());
        l.usernames.undo(&username.to_string());
    }

    /// The attempt succeeded: the pair starts afresh, and the attempt is taken back from
    /// the address and the username.
    pub fn succeeded(&self, username: &str, client: &str) {
        let mut l = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        l.pairs
            .entries
            .remove(&(username.to_string(), client.to_string()));
        l.clients.undo(&client.to_string());
        l.usernames.undo(&username.to_string());
    }

    /// Entries held in the three maps (for tests of the bound).
    pub fn entries(&self) -> usize {
        let l = self.limits.lock().unwrap_or_else(|e| e.into_inner());
        l.pairs.entries.len() + l.clients.entries.len() + l.usernames.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttle_backs_off_and_clears() {
        let t = LoginThrottle::default();
        let t0 = Instant::now();
        // Three free attempts, the fourth allowed and starting a 2 s wait.
        for _ in 0..4 {
            assert!(t.attempt("a", "1.2.3.4", t0).is_ok());
        }
        assert_eq!(t.attempt("a", "1.2.3.4", t0), Err(Duration::from_secs(2)));
        // Another address or username is not affected.
        assert!(t.attempt("a", "5.6.7.8", t0).is_ok());
        assert!(t.attempt("b", "1.2.3.4", t0).is_ok());
        let t1 = t0 + Duration::from_secs(2);
        assert!(t.attempt("a", "1.2.3.4", t1).is_ok());
        assert_eq!(
            t.attempt("a", "1.2.3.4", t1 + Duration::from_millis(500)),
            Err(Duration::from_millis(3500))
        );
        t.succeeded("a", "1.2.3.4");
        assert!(t.attempt("a", "1.2.3.4", t1).is_ok());
    }

    #[test]
    fn rotating_names_meets_the_client_limit_and_the_maps_stay_bounded() {
        let t = LoginThrottle::default();
        let t0 = Instant::now();
        let allowed = (0..50)
            .filter(|i| t.attempt(&format!("name-{i}"), "1.2.3.4", t0).is_ok())
            .count();
        assert_eq!(allowed as u32, FREE_PER_CLIENT + 1);
        // A botnet: every attempt a new name and address.
        for i in 0..(MAX_ENTRIES + 500) {
            let _ = t.attempt(&format!("n{i}"), &format!("a{i}"), t0);
        }
        assert!(t.entries() <= 3 * MAX_ENTRIES, "{}", t.entries());
        // A name guessed from many addresses meets the username limit.
        let spread = (0..50)
            .filter(|i| t.attempt("admin", &format!("10.0.0.{i}"), t0).is_ok())
            .count();
        assert_eq!(spread as u32, FREE_PER_USERNAME + 1);
    }

    #[test]
    fn quiet_keys_are_forgotten() {
        let t = LoginThrottle::default();
        let t0 = Instant::now();
        for _ in 0..4 {
            assert!(t.attempt("a", "1.2.3.4", t0).is_ok());
        }
        assert!(t.attempt("a", "1.2.3.4", t0).is_err());
        let later = t0 + FORGET_AFTER;
        for _ in 0..4 {
            assert!(t.attempt("a", "1.2.3.4", later).is_ok());
        }
    }

    #[test]
    fn an_unchecked_attempt_does_not_count() {
        let t = LoginThrottle::default();
        let t0 = Instant::now();
        for _ in 0..10 {
            assert!(t.attempt("a", "1.2.3.4", t0).is_ok());
            t.not_checked("a", "1.2.3.4");
        }
        assert_eq!(t.entries(), 0);
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        let mut memory = Vec::new();
        assert!(verify_password_in("correct horse", &h, &mut memory));
        assert!(!verify_password_in("correct hors", &h, &mut memory));
        assert!(!verify_password_in("x", "not a hash", &mut memory));
        assert_eq!(memory.len(), 19 * 1024, "19 MiB of 1 KiB blocks, kept");
    }
}
