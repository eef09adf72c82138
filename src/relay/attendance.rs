//! Attendance: turns the hub's attending/not-attending decisions into the catalog's viewer
//! rows. Holds what each viewer brought to its WHEP request and the row it has open; stamps
//! events with the wall-clock time the engine gives and hands them to the audience queue, never waiting.

use rustc_hash::FxHashMap;

use super::ViewerInfo;
use super::hub::PeerKey;
use crate::audience::{AudienceEvent, AudienceSink};
use crate::ids::{SessionId, ViewerId};

struct Attendee {
    info: ViewerInfo,
    /// The open attendance row, while it attends a live session.
    row: Option<ViewerId>,
}

/// See the module docs.
pub(super) struct Attendance {
    sink: AudienceSink,
    viewers: FxHashMap<PeerKey, Attendee>,
}

impl Attendance {
    pub(super) fn new(sink: AudienceSink) -> Attendance {
        Attendance {
            sink,
            viewers: FxHashMap::default(),
        }
    }

    /// A viewer was accepted with what its request said about it.
    pub(super) fn register(&mut self, viewer: PeerKey, info: ViewerInfo) {
        self.viewers.insert(viewer, Attendee { info, row: None });
    }

    /// A viewer is gone; its row was closed by [`Attendance::left`] before.
    pub(super) fn forget(&mut self, viewer: PeerKey) {
        self.viewers.remove(&viewer);
    }

    /// The viewer starts attending `session`: a new row.
    pub(super) fn joined(&mut self, viewer: PeerKey, session: SessionId, at_ms: i64) {
        let id = self.sink.viewer_id();
        let Some(a) = self.viewers.get_mut(&viewer) else {
            return;
        };
        a.row = Some(id);
        self.sink.push(AudienceEvent::ViewerJoined {
            id,
            session,
            at_ms,
            terminal: a.info.terminal,
            viewer_key: a.info.viewer_key.clone(),
            client_hash: a.info.client_hash.clone(),
        });
    }

    /// The viewer stops attending: its row is closed.
    pub(super) fn left(&mut self, viewer: PeerKey, at_ms: i64) {
        if let Some(id) = self.viewers.get_mut(&viewer).and_then(|a| a.row.take()) {
            self.sink.push(AudienceEvent::ViewerLeft { id, at_ms });
        }
    }

    /// The session ended.
    pub(super) fn session_ended(&mut self, session: SessionId, at_ms: i64) {
        self.sink
            .push(AudienceEvent::SessionEnded { session, at_ms });
    }
}
