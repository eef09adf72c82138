//! HLS players as attendance rows (../shared/DECISIONS.md): a player joins at its second
//! media-playlist request with the same `vid` (a player that reloads is playing) and
//! leaves [`LEAVE_AFTER_MS`] after its last one, its row closed at that last request. Sans-IO:
//! callers pass the wall clock.

use std::collections::HashMap;
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::audience::{AudienceEvent, AudienceSink};
use crate::ids::{SessionId, ViewerId};

/// A player silent this long (no playlist request) has left.
pub const LEAVE_AFTER_MS: i64 = 30_000;

/// One player of one session.
struct Player {
    /// Playlist requests so far (it joins at the second).
    requests: u32,
    /// Its open row, once joined.
    row: Option<ViewerId>,
    /// Unix ms of its last playlist request.
    last_ms: i64,
}

/// What a playlist request says about its player.
pub struct Request<'a> {
    /// The session it watches.
    pub session: SessionId,
    /// Its valid device id.
    pub vid: &'a str,
    /// `mobile`, `pc`, `tv` or `other`, from its User-Agent.
    pub terminal: &'static str,
    /// Salted hash of its address.
    pub client_hash: String,
}

/// Every HLS player being counted.
pub struct Viewers {
    // A std Mutex: held only to update the map, never across an await.
    inner: Mutex<Inner>,
}

struct Inner {
    /// `None` once the server is shutting down (the queue must close for the writer to
    /// finish).
    sink: Option<AudienceSink>,
    players: HashMap<(SessionId, String), Player>,
}

impl Viewers {
    /// Players counted into `sink`.
    pub fn new(sink: AudienceSink) -> Viewers {
        Viewers {
            inner: Mutex::new(Inner {
                sink: Some(sink),
                players: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A media-playlist request at `now_ms`.
    pub fn playlist_request(&self, request: Request, now_ms: i64) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let player = inner
            .players
            .entry((request.session, request.vid.to_string()))
            .or_insert(Player {
                requests: 0,
                row: None,
                last_ms: now_ms,
            });
        player.requests = player.requests.saturating_add(1);
        player.last_ms = now_ms;
        let Some(sink) = inner.sink.as_mut() else {
            return;
        };
        if player.requests >= 2 && player.row.is_none() {
            let id = sink.viewer_id();
            player.row = Some(id);
            sink.push(AudienceEvent::ViewerJoined {
                id,
                session: request.session,
                at_ms: now_ms,
                terminal: request.terminal,
                viewer_key: viewer_key(request.vid),
                client_hash: request.client_hash,
            });
        }
    }

    /// Closes the rows of players silent for [`LEAVE_AFTER_MS`] at `now_ms`.
    pub fn sweep(&self, now_ms: i64) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(sink) = inner.sink.as_mut() else {
            return;
        };
        inner.players.retain(|_, p| {
            if now_ms - p.last_ms < LEAVE_AFTER_MS {
                return true;
            }
            if let Some(id) = p.row.take() {
                sink.push(AudienceEvent::ViewerLeft {
                    id,
                    at_ms: p.last_ms,
                });
            }
            false
        });
    }

    /// The session ended: its players' rows close at their last request.
    pub fn session_ended(&self, session: SessionId) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(sink) = inner.sink.as_mut() else {
            return;
        };
        inner.players.retain(|(s, _), p| {
            if *s != session {
                return true;
            }
            if let Some(id) = p.row.take() {
                sink.push(AudienceEvent::ViewerLeft {
                    id,
                    at_ms: p.last_ms,
                });
            }
            false
        });
    }

    /// The server stops: every open row closes at its player's last request, and the
    /// queue end is let go so the attendance writer can finish.
    pub fn close(&self) {
        let mut inner = self.lock();
        let inner = &mut *inner;
        if let Some(mut sink) = inner.sink.take() {
            for (_, p) in inner.players.drain() {
                if let Some(id) = p.row {
                    sink.push(AudienceEvent::ViewerLeft {
                        id,
                        at_ms: p.last_ms,
                    });
                }
            }
        }
    }

    /// Players with an open row now.
    pub fn watching(&self, session: SessionId) -> usize {
        self.lock()
            .players
            .iter()
            .filter(|((s, _), p)| *s == session && p.row.is_some())
            .count()
    }
}

/// What makes two rows one person for unique counts: the same hash WHEP uses for `vid`, so
/// a resident on WebRTC and on HLS counts once.
pub fn viewer_key(vid: &str) -> String {
    hex::encode(&Sha256::digest(vid.as_bytes())[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(rx: &std::sync::mpsc::Receiver<AudienceEvent>) -> Vec<AudienceEvent> {
        rx.try_iter().collect()
    }

    #[test]
    fn a_player_joins_at_its_second_request_and_leaves_after_silence() {
        let (tx, rx) = std::sync::mpsc::channel();
        let viewers = Viewers::new(AudienceSink::new(tx));
        let request = |vid: &'static str| Request {
            session: SessionId(7),
            vid,
            terminal: "tv",
            client_hash: "h".into(),
        };
        viewers.playlist_request(request("a"), 1_000);
        assert!(events(&rx).is_empty(), "one request is not playing yet");
        viewers.playlist_request(request("a"), 3_000);
        let joined = events(&rx);
        assert!(
            matches!(joined.as_slice(), [AudienceEvent::ViewerJoined { session, at_ms: 3_000, terminal: "tv", viewer_key, .. }]
                if *session == SessionId(7) && *viewer_key == super::viewer_key("a")),
            "{joined:?}"
        );
        viewers.playlist_request(request("a"), 5_000);
        viewers.playlist_request(request("b"), 5_000);
        assert!(events(&rx).is_empty(), "no second row for the same player");
        assert_eq!(viewers.watching(SessionId(7)), 1);
        viewers.sweep(5_000 + LEAVE_AFTER_MS - 1);
        assert!(events(&rx).is_empty());
        viewers.sweep(5_000 + LEAVE_AFTER_MS);
        let left = events(&rx);
        assert!(
            matches!(
                left.as_slice(),
                [AudienceEvent::ViewerLeft { at_ms: 5_000, .. }]
            ),
            "{left:?}"
        );
        assert_eq!(viewers.watching(SessionId(7)), 0);
    }

    #[test]
    fn a_session_end_closes_its_players_rows() {
        let (tx, rx) = std::sync::mpsc::channel();
        let viewers = Viewers::new(AudienceSink::new(tx));
        for (session, vid) in [(1, "a"), (1, "a"), (2, "b"), (2, "b")] {
            viewers.playlist_request(
                Request {
                    session: SessionId(session),
                    vid,
                    terminal: "pc",
                    client_hash: String::new(),
                },
                100,
            );
        }
        assert_eq!(events(&rx).len(), 2);
        viewers.session_ended(SessionId(1));
        assert!(matches!(
            events(&rx).as_slice(),
            [AudienceEvent::ViewerLeft { at_ms: 100, .. }]
        ));
        assert_eq!(viewers.watching(SessionId(2)), 1);
    }
}
