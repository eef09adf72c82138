//! Administrator API: login, the hierarchy, CSV import, topics and films, session metadata
//! and headcounts, accounts, statistics, recordings (replays), and the dashboard page.
//!
//! Every route here needs `Authorization: Bearer <token>` from `POST /api/login` and checks
//! the account's scope: a city admin sees everything, a center admin its center, a station
//! operator its station. Outside the scope the answer is 403.
//!
//! | route | who |
//! |---|---|
//! | `POST /api/login` `{username, password}` -> `{token}` | anyone (throttled) |
//! | `POST /api/logout`, `GET /api/me` | logged in |
//! | `GET /api/admin/hierarchy` | the tree within the scope |
//! | `POST /api/admin/centers` `{name}` | city |
//! | `POST /api/admin/institutes` `{center_id, name}` | city, that center |
//! | `POST /api/admin/stations` `{institute_id, name, address}` | city, that center |
//! | `POST /api/admin/stations/{id}/rotate-key` | city, its center, that station |
//! | `GET /api/admin/stations/{id}/sessions` | city, its center, that station |
//! | `POST /api/admin/sessions/{id}` `{speaker, topic_id, film_id, scheduled_at, in_person}` | the session's station and above |
//! | `POST /api/admin/import` (CSV body) | city |
//! | `GET/POST /api/admin/topics`, `/api/admin/films` `{name}` | read: logged in; add: city |
//! | `POST /api/admin/accounts` `{username, password, role, id}` | city; center admins add station operators of their center |
//! | `GET /api/stats/table`, `/api/stats/sessions`, `/api/stats/ratings` (`format=csv` for CSV) | within scope |
//! | `GET /api/admin/recordings?station={station id}&deleted=1` (hidden ones included; deleted ones with `deleted=1`) | within scope |
//! | `POST /api/admin/recordings/{id}/publish`, `/hide`, `/keep`, `/unkeep` -> the recording | the recording's station and above |
//! | `DELETE /api/admin/recordings/{id}` (its files, then the row marked deleted) -> the recording | the recording's station and above |
//! | `GET /admin` | the dashboard page (it logs in by itself) |

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use warp::filters::BoxedFilter;
use warp::http::HeaderValue;
use warp::reply::Response;
use warp::{Filter, Reply};

use super::csv::{ratings_csv, sessions_csv, stats_csv};
use super::error::ApiError;
use super::pages::page;
use super::{State, finish, with_state};
use crate::audience::now_ms;
use crate::catalog::{
    Account, Level, RatingGroup, Recording, RecordingKind, Scope, SessionUpdate, StatsQuery,
    TOKEN_LIFETIME_MS, check_login_lengths,
};
use crate::ids::{CenterId, InstituteId, StationId};

/// The dashboard (zh-CN): overview, audience chart (SVG drawn by its own script), rankings,
/// drill-down to sessions and the station's headcount form. No CDN, works offline.
const DASHBOARD: &str = include_str!("pages/admin.html");

/// Body of `POST /api/login`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// Account name.
    pub username: String,
    /// Password.
    pub password: String,
}

/// Body of the create routes that take only a name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameBody {
    /// Center name, topic name or film title.
    pub name: String,
}

/// Body of `POST /api/admin/institutes`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstituteBody {
    /// The parent center.
    pub center_id: CenterId,
    /// Institute name.
    pub name: String,
}

/// Body of `POST /api/admin/stations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StationBody {
    /// The parent institute.
    pub institute_id: InstituteId,
    /// Station name.
    pub name: String,
    /// Street address, shown to administrators.
    #[serde(default)]
    pub address: String,
}

/// Body of `POST /api/admin/accounts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountBody {
    /// Login name.
    pub username: String,
    /// At least 8 characters.
    pub password: String,
    /// `city`, `center` or `station`.
    pub role: String,
    /// Center id for `center`, station id for `station`.
    pub id: Option<i64>,
}

/// Query of `GET /api/admin/recordings`.
#[derive(Debug, Default)]
pub struct RecordingsQuery {
    /// Only this station's recordings (a station id).
    pub station: Option<i64>,
    /// Deleted recordings too, with when and why (`deleted=1`).
    pub deleted: bool,
}

impl RecordingsQuery {
    /// Reads `station` and `deleted`; anything else is refused with the reason (read by
    /// hand: a rejected `warp::query` would fall through to the next route's 404).
    pub fn parse(params: &HashMap<String, String>) -> Result<RecordingsQuery, ApiError> {
        let mut q = RecordingsQuery::default();
        for (key, value) in params {
            match key.as_str() {
                "station" => {
                    q.station = Some(value.trim().parse().map_err(|_| {
                        ApiError::BadRequest(format!("station={value:?} is not a station id"))
                    })?);
                }
                "deleted" => {
                    q.deleted = match value.as_str() {
                        "0" | "false" => false,
                        "1" | "true" => true,
                        other => {
                            return Err(ApiError::BadRequest(format!(
                                "deleted={other:?}: use deleted=1 to include deleted recordings"
                            )));
                        }
                    }
                }
                other => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown parameter {other:?}; known: station, deleted"
                    )));
                }
            }
        }
        Ok(q)
    }
}

fn bearer(header: &Option<String>) -> Option<&str> {
    header
        .as_deref()
        .and_then(|a| {
            a.strip_prefix("Bearer ")
                .or_else(|| a.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

pub(crate) async fn authenticate(
    state: &State,
    header: &Option<String>,
) -> Result<Account, ApiError> {
    let token = bearer(header).ok_or_else(|| {
        ApiError::Unauthorized(
            "log in first: POST /api/login, then send Authorization: Bearer <token>".into(),
        )
    })?;
    state
        .catalog
        .account_for_token(token, now_ms())
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the login has expired; log in again".into()))
}

fn outside(what: &str) -> ApiError {
    ApiError::Forbidden(format!("{what} is outside the scope of this account"))
}

pub(super) fn require_city(account: &Account) -> Result<(), ApiError> {
    match account.scope {
        Scope::City => Ok(()),
        _ => Err(ApiError::Forbidden(
            "only a city administrator may do this".into(),
        )),
    }
}

fn allow_center(account: &Account, center: CenterId) -> Result<(), ApiError> {
    match account.scope {
        Scope::City => Ok(()),
        Scope::Center(c) if c == center => Ok(()),
        _ => Err(outside(&format!("center {center}"))),
    }
}

async fn allow_institute(
    state: &State,
    account: &Account,
    institute: InstituteId,
) -> Result<(), ApiError> {
    match account.scope {
        Scope::City => Ok(()),
        Scope::Center(c) => match state.catalog.institute_center(institute).await? {
            Some(center) if center == c => Ok(()),
            _ => Err(outside(&format!("institute {institute}"))),
        },
        Scope::Station(_) => Err(outside(&format!("institute {institute}"))),
    }
}

pub(crate) async fn allow_station(
    state: &State,
    account: &Account,
    station: StationId,
) -> Result<(), ApiError> {
    match account.scope {
        Scope::City => Ok(()),
        Scope::Center(c) => match state.catalog.station_placement(station).await {
            Ok(p) if p.center_id == c => Ok(()),
            _ => Err(outside(&format!("station {station}"))),
        },
        Scope::Station(s) if s == station => Ok(()),
        Scope::Station(_) => Err(outside(&format!("station {station}"))),
    }
}

/// Recording `id` when the account's scope covers its station: 404 when there is no such
/// recording, 403 when it is another station's.
async fn recording_in_scope(
    state: &State,
    account: &Account,
    id: i64,
) -> Result<Recording, ApiError> {
    let rec = state
        .catalog
        .recording(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no recording {id}")))?;
    allow_station(state, account, StationId(rec.station_id)).await?;
    Ok(rec)
}

/// `GET /api/admin/recordings`: one station's (in scope), or every recording the scope
/// covers; hidden ones included, deleted ones when asked for.
async fn list_recordings(
    state: &State,
    account: &Account,
    q: RecordingsQuery,
) -> Result<Vec<Recording>, ApiError> {
    let station = match (q.station, account.scope) {
        (Some(s), _) => {
            allow_station(state, account, StationId(s)).await?;
            Some(StationId(s))
        }
        (None, Scope::Station(s)) => Some(s),
        (None, _) => None,
    };
    let mut rows = state.catalog.list_recordings(station, q.deleted).await?;
    if let (None, Scope::Center(c)) = (station, account.scope) {
        rows.retain(|r| r.center_id == c.0);
    }
    Ok(rows)
}

/// `DELETE /api/admin/recordings/{id}`: a recorded replay's files go first (a failure
/// leaves the row as it was, so the operator can try again), then the row is marked
/// deleted by the account; a library replay has no files of its own.
async fn delete_recording(
    state: &State,
    account: &Account,
    id: i64,
) -> Result<Recording, ApiError> {
    let rec = recording_in_scope(state, account, id).await?;
    let mut freed = 0;
    if rec.kind == RecordingKind::Recorded {
        let (dir, path) = (state.replays.root().to_path_buf(), rec.path.clone());
        freed = tokio::task::spawn_blocking(move || crate::recording::store::remove(&dir, &path))
            .await
            .map_err(|e| ApiError::Internal(format!("removing recording {id}: {e}")))?
            .map_err(|e| ApiError::Internal(format!("removing recording {id}: {e}")))?;
    }
    let reason = format!("deleted by {}", account.username);
    let rec = state
        .catalog
        .mark_recording_deleted(id, &reason, now_ms())
        .await?;
    state.replays.forget(id);
    tracing::info!(recording = id, freed, %reason, "recording deleted");
    Ok(rec)
}

/// Checks a statistics filter against the scope; an unfiltered request from a center admin
/// or station operator is narrowed to their own center or station.
async fn scoped(
    state: &State,
    account: &Account,
    mut q: StatsQuery,
) -> Result<StatsQuery, ApiError> {
    match q.level {
        Some((Level::Center, id)) => allow_center(account, CenterId(id))?,
        Some((Level::Institute, id)) => allow_institute(state, account, InstituteId(id)).await?,
        Some((Level::Station, id)) => allow_station(state, account, StationId(id)).await?,
        None => {
            q.level = match account.scope {
                Scope::City => None,
                Scope::Center(c) => Some((Level::Center, c.0)),
                Scope::Station(s) => Some((Level::Station, s.0)),
            }
        }
    }
    Ok(q)
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    warp::reply::json(value).into_response()
}

pub(super) fn csv(body: String, name: &str) -> Response {
    let mut r = body.into_response();
    let h = r.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert("content-disposition", v);
    }
    r
}

pub(super) fn wants_csv(params: &HashMap<String, String>) -> Result<bool, ApiError> {
    match params.get("format").map(String::as_str) {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "format {other:?} is not json or csv"
        ))),
    }
}

async fn login(
    body: Login,
    remote: Option<SocketAddr>,
    state: State,
) -> Result<Response, ApiError> {
    // The client as `[http] trusted_proxies` lets it be known (serve::client_addr).
    let client = remote.map(|a| a.ip().to_string()).unwrap_or_default();
    let user = body.username.trim().to_string();
    // Over-long fields are 400 before they reach the throttle's maps or a hash.
    check_login_lengths(&user, &body.password)?;
    // Counted as a failure now, before the hash: parallel guesses cannot slip past.
    if let Err(wait) = state.login_throttle.attempt(&user, &client, Instant::now()) {
        let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
        return Err(ApiError::TooManyRequests(
            format!("too many failed logins; try again in {seconds} s"),
            seconds,
        ));
    }
    let checked = state
        .catalog
        .login(&state.password_checks, &user, &body.password, now_ms())
        .await;
    match checked {
        Ok(Some((token, account))) => {
            state.login_throttle.succeeded(&user, &client);
            Ok(json(&serde_json::json!({
                "token": token,
                "expires_in_s": TOKEN_LIFETIME_MS / 1000,
                "account": account,
            })))
        }
        Ok(None) => Err(ApiError::Unauthorized("wrong username or password".into())),
        Err(err) => {
            // Never checked (no check free, a database failure): not a guess.
            state.login_throttle.not_checked(&user, &client);
            Err(err.into())
        }
    }
}

/// Largest CSV `POST /api/admin/import` takes.
const IMPORT_LIMIT: usize = 8 * 1024 * 1024;

/// A JSON body of at most 64 KiB, for the one route without a token (login).
fn body_json<T: serde::de::DeserializeOwned + Send>()
-> impl Filter<Extract = (T,), Error = warp::Rejection> + Clone {
    warp::body::content_length_limit(64 * 1024).and(warp::body::json())
}

/// A request body not read yet. Admin routes read it only after the token checks, so a
/// client without a valid token cannot make the server take in and buffer an upload.
pub(crate) struct UnreadBody {
    /// `Content-Length`, when the client declared one.
    declared: Option<u64>,
    chunks: Pin<Box<dyn Stream<Item = Result<Bytes, warp::Error>> + Send>>,
}

impl UnreadBody {
    /// The body, at most `limit` bytes (413 past it: at once for a declared length, else
    /// as soon as it shows).
    pub(crate) async fn bytes(mut self, limit: usize) -> Result<Bytes, ApiError> {
        let too_large = || {
            ApiError::TooLarge(format!(
                "request body too large: at most {} KiB here",
                limit / 1024
            ))
        };
        if self.declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut out = BytesMut::new();
        while let Some(chunk) = self.chunks.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::BadRequest(format!("the request body could not be read: {e}"))
            })?;
            if out.len() + chunk.len() > limit {
                return Err(too_large());
            }
            out.extend_from_slice(&chunk);
        }
        Ok(out.freeze())
    }

    /// The body as JSON of at most 64 KiB.
    pub(crate) async fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, ApiError> {
        let body = self.bytes(64 * 1024).await?;
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
    }
}

/// The body of a request, left unread (see [`UnreadBody`]); a declared `Content-Length`
/// is checked against the route's limit only once the token is.
pub(crate) fn unread_body() -> impl Filter<Extract = (UnreadBody,), Error = warp::Rejection> + Clone
{
    warp::header::optional::<u64>("content-length")
        .and(warp::body::stream())
        .map(unread)
}

fn unread<S, B>(declared: Option<u64>, stream: S) -> UnreadBody
where
    S: Stream<Item = Result<B, warp::Error>> + Send + 'static,
    B: Buf,
{
    let chunks = stream.map(|chunk| chunk.map(|mut b| b.copy_to_bytes(b.remaining())));
    UnreadBody {
        declared,
        chunks: Box::pin(chunks),
    }
}

/// Every admin route; merged into [`super::routes`].
pub fn routes(state: State) -> BoxedFilter<(Response,)> {
    let auth = warp::header::optional::<String>("authorization");

    let login = warp::post()
        .and(warp::path!("api" / "login"))
        .and(body_json())
        .and(super::serve::client_addr())
        .and(with_state(state.clone()))
        .then(|body, remote, state| async move { finish(login(body, remote, state).await) });
    let logout = warp::post()
        .and(warp::path!("api" / "logout"))
        .and(auth)
        .and(with_state(state.clone()))
        .then(|h: Option<String>, state: State| async move {
            finish(
                async {
                    authenticate(&state, &h).await?;
                    if let Some(token) = bearer(&h) {
                        state.catalog.logout(token).await?;
                    }
                    Ok(json(&serde_json::json!({"logged_out": true})))
                }
                .await,
            )
        });
    let me = warp::get()
        .and(warp::path!("api" / "me"))
        .and(auth)
        .and(with_state(state.clone()))
        .then(|h: Option<String>, state: State| async move {
            finish(authenticate(&state, &h).await.map(|a| json(&a)))
        });
    let hierarchy = warp::get()
        .and(warp::path!("api" / "admin" / "hierarchy"))
        .and(auth)
        .and(with_state(state.clone()))
        .then(|h: Option<String>, state: State| async move {
            finish(
                async {
                    let a = authenticate(&state, &h).await?;
                    let (center, station) = match a.scope {
                        Scope::City => (None, None),
                        Scope::Center(c) => (Some(c), None),
                        Scope::Station(s) => (None, Some(s)),
                    };
                    Ok(json(&state.catalog.hierarchy(center, station).await?))
                }
                .await,
            )
        });
    let centers = warp::post()
        .and(warp::path!("api" / "admin" / "centers"))
        .and(auth)
        .and(unread_body())
        .and(with_state(state.clone()))
        .then(
            |h: Option<String>, body: UnreadBody, state: State| async move {
                finish(
                    async {
                        require_city(&authenticate(&state, &h).await?)?;
                        let body: NameBody = body.json().await?;
                        let id = state.catalog.create_center(&body.name).await?;
                        Ok(json(&serde_json::json!({"id": id})))
                    }
                    .await,
                )
            },
        );
    let institutes = warp::post()
        .and(warp::path!("api" / "admin" / "institutes"))
        .and(auth)
        .and(unread_body())
        .and(with_state(state.clone()))
        .then(
            |h: Option<String>, body: UnreadBody, state: State| async move {
                finish(
                    async {
                        let a = authenticate(&state, &h).await?;
                        let body: InstituteBody = body.json().await?;
                        allow_center(&a, body.center_id)?;
                        let id = state
                            .catalog
                            .create_institute(body.center_id, &body.name)
                            .await?;
                        Ok(json(&serde_json::json!({"id": id})))
                    }
                    .await,
                )
            },
        );
    let stations = warp::post()
        .and(warp::path!("api" / "admin" / "stations"))
        .and(auth)
        .and(unread_body())
        .and(with_state(state.clone()))
        .then(
            |h: Option<String>, body: UnreadBody, state: State| async move {
                finish(
                    async {
                        let a = authenticate(&state, &h).await?;
                        let body: StationBody = body.json().await?;
                        allow_institute(&state, &a, body.institute_id).await?;
                        let created = state
                            .catalog
                            .create_station(body.institute_id, &body.name, &body.address)
                            .await?;
                        Ok(json(&created))
                    }
                    .await,
                )
            },
        );
    let rotate = warp::post()
        .and(warp::path!(
            "api" / "admin" / "stations" / i64 / "rotate-key"
        ))
        .and(auth)
        .and(with_state(state.clone()))
        .then(|id: i64, h: Option<String>, state: State| async move {
            finish(
                async {
                    allow_station(&state, &authenticate(&state, &h).await?, StationId(id)).await?;
                    let key = state.catalog.rotate_key(&id.to_string()).await?;
                    Ok(json(&serde_json::json!({"stream_key": key})))
                }
                .await,
            )
        });
    let station_sessions = warp::get()
        .and(warp::path!("api" / "admin" / "stations" / i64 / "sessions"))
        .and(auth)
        .and(with_state(state.clone()))
        .then(|id: i64, h: Option<String>, state: State| async move {
            finish(
                async {
                    allow_station(&state, &authenticate(&state, &h).await?, StationId(id)).await?;
                    Ok(json(&state.catalog.station_sessions(id, 200).await?))
                }
                .await,
            )
        });
    let session_update = warp::post()
        .and(warp::path!("api" / "admin" / "sessions" / i64))
        .and(auth)
        .and(unread_body())
        .and(with_state(state.clone()))
        .then(
            |id: i64, h: Option<String>, body: UnreadBody, state: State| async move {
                finish(
                    async {
                        let a = authenticate(&state, &h).await?;
                        let station = state
                            .catalog
                            .session_station(id)
                            .await?
                            .ok_or_else(|| ApiError::NotFound(format!("no session {id}")))?;
                        allow_station(&state, &a, station).await?;
                        let body: SessionUpdate = body.json().await?;
                        Ok(json(&state.catalog.update_session(id, &body).await?))
                    }
                    .await,
                )
            },
        );
    let import = warp::post()
        .and(warp::path!("api" / "admin" / "import"))
        .and(auth)
        .and(unread_body())
        .and(with_state(state.clone()))
        .then(
            |h: Option<String>, body: UnreadBody, state: State| async move {
                finish(
                    async {
                        require_city(&authenticate(&state, &h).await?)?;
                        let body = body.bytes(IMPORT_LIMIT).await?;
                        let text = std::str::from_utf8(&body).map_err(|_| {
                            ApiError::BadRequest("the CSV file must be UTF-8 text".into())
                        })?;
                        Ok(json(&state.catalog.import_csv(text).await?))
                    }
                    .await,
                )
            },
        );
    let list = warp::get()
        .and(warp::path!("api" / "admin" / String))
        .and(auth)
        .and(with_state(state.clone()))
        .then(|what: String, h: Option<String>, state: State| async move {
            finish(
                async {
                    authenticate(&state, &h).await?;
                    match what.as_str() {
                        "topics" => Ok(json(&state.catalog.topics().await?)),
                        "films" => Ok(json(&state.catalog.films().await?)),
                        _ => Err(ApiError::NotFound("not found".into())),
                    }
                }
                .await,
            )
        });
    let add_named = warp::post()
        .and(warp::path!("api" / "admin" / String))
        .and(auth)
        .and(unread_body())
        .and(with_state(state.clone()))
        .then(
            |what: String, h: Option<String>, body: UnreadBody, state: State| async move {
                finish(
                    async {
                        require_city(&authenticate(&state, &h).await?)?;
                        if !["topics", "films"].contains(&what.as_str()) {
                            return Err(ApiError::NotFound("not found".into()));
                        }
                        let body: NameBody = body.json().await?;
                        let id = match what.as_str() {
                            "topics" => state.catalog.add_topic(&body.name).await?,
                            "films" => state.catalog.add_film(&body.name).await?.0,
                            _ => return Err(ApiError::NotFound("not found".into())),
                        };
                        Ok(json(&serde_json::json!({"id": id})))
                    }
                    .await,
                )
            },
        );
    let accounts = warp::post()
        .and(warp::path!("api" / "admin" / "accounts"))
        .and(auth)
        .and(unread_body())
        .and(with_state(state.clone()))
        .then(|h: Option<String>, body: UnreadBody, state: State| async move {
            finish(
                async {
                    let a = authenticate(&state, &h).await?;
                    let body: AccountBody = body.json().await?;
                    let scope = match (body.role.as_str(), body.id) {
                        ("city", _) => Scope::City,
                        ("center", Some(c)) => Scope::Center(CenterId(c)),
                        ("station", Some(s)) => Scope::Station(StationId(s)),
                        _ => {
                            return Err(ApiError::BadRequest(
                                "role must be city, center (with id = center id) or station (with id = station id)"
                                    .into(),
                            ));
                        }
                    };
                    match scope {
                        Scope::Station(s) => allow_station(&state, &a, s).await?,
                        _ => require_city(&a)?,
                    }
                    if let (Scope::Station(_), Scope::Station(_)) = (a.scope, scope) {
                        return Err(ApiError::Forbidden(
                            "station operators cannot create accounts".into(),
                        ));
                    }
                    let id = state
                        .catalog
                        .add_account(&body.username, &body.password, scope)
                        .await?;
                    Ok(json(&serde_json::json!({"id": id})))
                }
                .await,
            )
        });
    let stats = warp::get()
        .and(warp::path!("api" / "stats" / String))
        .and(auth)
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state.clone()))
        .then(
            |what: String, h: Option<String>, params: HashMap<String, String>, state: State| async move {
                finish(
                    async {
                        let a = authenticate(&state, &h).await?;
                        let as_csv = wants_csv(&params)?;
                        // Ratings group by more than attendance does (speaker, topic).
                        let mut params = params;
                        let rating_group = if what == "ratings" {
                            Some(RatingGroup::parse(params.remove("group").as_deref())?)
                        } else {
                            None
                        };
                        let q = scoped(&state, &a, StatsQuery::parse(&params)?).await?;
                        match what.as_str() {
                            "ratings" => {
                                let group = rating_group.unwrap_or(RatingGroup::All);
                                let rows = state.catalog.stats_ratings(&q, group, now_ms()).await?;
                                Ok(if as_csv {
                                    csv(ratings_csv(&rows), "feiyan-ratings.csv")
                                } else {
                                    json(&rows)
                                })
                            }
                            "table" => {
                                let rows = state.catalog.stats(&q, now_ms()).await?;
                                Ok(if as_csv {
                                    csv(stats_csv(&rows), "feiyan-stats.csv")
                                } else {
                                    json(&rows)
                                })
                            }
                            "sessions" => {
                                let rows = state.catalog.stats_sessions(&q, now_ms()).await?;
                                Ok(if as_csv {
                                    csv(sessions_csv(&rows), "feiyan-sessions.csv")
                                } else {
                                    json(&rows)
                                })
                            }
                            other => Err(ApiError::NotFound(format!(
                                "no statistics table {other:?}; use /api/stats/table, /api/stats/sessions, /api/stats/ratings or /api/stats/requests"
                            ))),
                        }
                    }
                    .await,
                )
            },
        );

    let recordings = warp::get()
        .and(warp::path!("api" / "admin" / "recordings"))
        .and(auth)
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state(state.clone()))
        .then(
            |h: Option<String>, params: HashMap<String, String>, state: State| async move {
                finish(
                    async {
                        let a = authenticate(&state, &h).await?;
                        let q = RecordingsQuery::parse(&params)?;
                        Ok(json(&list_recordings(&state, &a, q).await?))
                    }
                    .await,
                )
            },
        );
    let recording_action = warp::post()
        .and(warp::path!("api" / "admin" / "recordings" / i64 / String))
        .and(auth)
        .and(with_state(state.clone()))
        .then(
            |id: i64, action: String, h: Option<String>, state: State| async move {
                finish(
                    async {
                        let a = authenticate(&state, &h).await?;
                        let c = &state.catalog;
                        // Unknown actions are 404 before the id is looked up.
                        if !["publish", "hide", "keep", "unkeep"].contains(&action.as_str()) {
                            return Err(ApiError::NotFound(format!(
                                "no recording action {action:?}; use publish, hide, keep or unkeep"
                            )));
                        }
                        recording_in_scope(&state, &a, id).await?;
                        let rec = match action.as_str() {
                            "publish" => c.set_recording_published(id, true).await?,
                            "hide" => c.set_recording_published(id, false).await?,
                            "keep" => c.set_recording_keep(id, true).await?,
                            _ => c.set_recording_keep(id, false).await?,
                        };
                        // Hiding or publishing shows at once, not after the row cache.
                        state.replays.forget(id);
                        Ok(json(&rec))
                    }
                    .await,
                )
            },
        );
    let recording_delete = warp::delete()
        .and(warp::path!("api" / "admin" / "recordings" / i64))
        .and(auth)
        .and(with_state(state.clone()))
        .then(|id: i64, h: Option<String>, state: State| async move {
            finish(
                async {
                    let a = authenticate(&state, &h).await?;
                    Ok(json(&delete_recording(&state, &a, id).await?))
                }
                .await,
            )
        });

    let dashboard = warp::get()
        .and(warp::path!("admin"))
        .map(|| page(DASHBOARD));

    login
        .or(logout)
        .unify()
        .or(me)
        .unify()
        .or(hierarchy)
        .unify()
        .or(centers)
        .unify()
        .or(institutes)
        .unify()
        .or(stations)
        .unify()
        .or(rotate)
        .unify()
        .or(station_sessions)
        .unify()
        .or(session_update)
        .unify()
        .or(import)
        .unify()
        .or(accounts)
        .unify()
        .boxed()
        // Before `list`, whose `GET /api/admin/{what}` would answer 404 for "recordings".
        .or(recordings)
        .unify()
        .or(recording_action)
        .unify()
        .or(recording_delete)
        .unify()
        .or(list)
        .unify()
        .or(add_named)
        .unify()
        .or(stats)
        .unify()
        .or(dashboard)
        .unify()
        .boxed()
}
