//! The attendance spill file (`attendance-spill.jsonl` in `[catalog] state_dir`): events
//! past the memory queue's depth, one JSON object a line, appended and fsync'd, read back
//! in the order written. Also the line format of the dead-letter file.
//!
//! A crash may leave a torn last line; opening the file cuts it off with a warning (the
//! event it held was never acknowledged as safe) so lines appended later stay whole. A line
//! that does not parse is skipped with a warning when read, never a panic.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::audience::{AudienceEvent, terminal_name};
use crate::ids::{SessionId, ViewerId};

/// Name of the spill file in the state folder.
pub const SPILL_FILE: &str = "attendance-spill.jsonl";
/// Name of the dead-letter file in the state folder.
pub const DEAD_LETTER_FILE: &str = "attendance-dead-letter.jsonl";

/// One event as a line of the spill and dead-letter files.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(super) enum Line {
    /// [`AudienceEvent::ViewerJoined`].
    Joined {
        id: i64,
        session: i64,
        at_ms: i64,
        terminal: String,
        viewer_key: String,
        client_hash: String,
    },
    /// [`AudienceEvent::ViewerLeft`].
    Left { id: i64, at_ms: i64 },
    /// [`AudienceEvent::SessionEnded`].
    Ended { session: i64, at_ms: i64 },
}

impl From<&AudienceEvent> for Line {
    fn from(event: &AudienceEvent) -> Line {
        match event {
            AudienceEvent::ViewerJoined {
                id,
                session,
                at_ms,
                terminal,
                viewer_key,
                client_hash,
            } => Line::Joined {
                id: id.0,
                session: session.0,
                at_ms: *at_ms,
                terminal: terminal.to_string(),
                viewer_key: viewer_key.clone(),
                client_hash: client_hash.clone(),
            },
            AudienceEvent::ViewerLeft { id, at_ms } => Line::Left {
                id: id.0,
                at_ms: *at_ms,
            },
            AudienceEvent::SessionEnded { session, at_ms } => Line::Ended {
                session: session.0,
                at_ms: *at_ms,
            },
        }
    }
}

impl From<Line> for AudienceEvent {
    fn from(line: Line) -> AudienceEvent {
        match line {
            Line::Joined {
                id,
                session,
                at_ms,
                terminal,
                viewer_key,
                client_hash,
            } => AudienceEvent::ViewerJoined {
                id: ViewerId(id),
                session: SessionId(session),
                at_ms,
                terminal: terminal_name(&terminal),
                viewer_key,
                client_hash,
            },
            Line::Left { id, at_ms } => AudienceEvent::ViewerLeft {
                id: ViewerId(id),
                at_ms,
            },
            Line::Ended { session, at_ms } => AudienceEvent::SessionEnded {
                session: SessionId(session),
                at_ms,
            },
        }
    }
}

/// A refused row as a line of the dead-letter file.
#[derive(Debug, Serialize)]
pub(super) struct DeadLetter<'a> {
    /// When it was refused, unix ms.
    pub refused_at_ms: i64,
    /// The database's message.
    pub reason: &'a str,
    /// The event.
    #[serde(flatten)]
    pub line: Line,
}

/// Events as JSON lines.
fn encode(events: impl IntoIterator<Item = impl Into<Line>>) -> Vec<u8> {
    let mut out = Vec::new();
    for event in events {
        // Plain numbers and strings: serializing cannot fail.
        let _ = serde_json::to_writer(&mut out, &event.into());
        out.push(b'\n');
    }
    out
}

/// The spill file, open for appending at its end and reading from where the last read
/// stopped. Only the writer's spool thread touches it (plain blocking I/O).
pub(super) struct SpillFile {
    path: PathBuf,
    /// Appends go here, at `len`.
    file: File,
    /// A second open file whose position is the first unread line.
    reader: BufReader<File>,
    /// Bytes in the file.
    len: u64,
    /// Lines appended and not yet read.
    unread: usize,
}

impl SpillFile {
    /// Opens (creating when missing, with its folder) the spill file at `path`. Lines a
    /// previous run left are unread; a torn last line is cut off with a warning.
    pub fn open(path: &Path) -> io::Result<SpillFile> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if whole < bytes.len() {
            warn!(
                path = %path.display(),
                bytes = bytes.len() - whole,
                "attendance spill file ends in a torn line (a crash while writing it); cutting it off"
            );
            file.set_len(whole as u64)?;
            file.sync_data()?;
        }
        let unread = bytes[..whole].iter().filter(|&&b| b == b'\n').count();
        // A handle of its own: a `try_clone` would share the file position with `file`.
        let reader = BufReader::new(File::open(path)?);
        Ok(SpillFile {
            path: path.to_path_buf(),
            file,
            reader,
            len: whole as u64,
            unread,
        })
    }

    /// Lines appended and not yet read.
    pub fn unread(&self) -> usize {
        self.unread
    }

    /// Whether the file holds any line, read or not.
    pub fn has_lines(&self) -> bool {
        self.len > 0
    }

    /// Appends `events` after every line already there, and syncs them to disk. On an
    /// error the file is cut back to where it was, so a later append starts a whole line.
    pub fn append(&mut self, events: &[AudienceEvent]) -> io::Result<()> {
        let bytes = encode(events);
        let result = (|| {
            self.file.seek(SeekFrom::Start(self.len))?;
            self.file.write_all(&bytes)?;
            self.file.sync_data()
        })();
        match result {
            Ok(()) => {
                self.len += bytes.len() as u64;
                self.unread += events.len();
                Ok(())
            }
            Err(e) => {
                let _ = self.file.set_len(self.len);
                Err(e)
            }
        }
    }

    /// Reads up to `max` unread lines, in order: the events, and how many lines were
    /// consumed (a line that does not parse is consumed and skipped with a warning).
    pub fn read(&mut self, max: usize) -> io::Result<(Vec<AudienceEvent>, usize)> {
        let mut events = Vec::new();
        let mut lines = 0;
        let mut text = String::new();
        let limit = max.min(self.unread);
        while lines < limit {
            text.clear();
            if self.reader.read_line(&mut text)? == 0 {
                // Nothing more on disk although lines were counted: trust the disk.
                self.unread = 0;
                break;
            }
            lines += 1;
            self.unread -= 1;
            match serde_json::from_str::<Line>(text.trim_end()) {
                Ok(line) => events.push(line.into()),
                Err(err) => warn!(
                    path = %self.path.display(),
                    %err,
                    "skipping an unreadable line of the attendance spill file"
                ),
            }
        }
        Ok((events, lines))
    }

    /// Empties the file once every line in it is written to the database.
    pub fn clear(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.sync_data()?;
        self.reader.seek(SeekFrom::Start(0))?;
        self.len = 0;
        self.unread = 0;
        Ok(())
    }

    /// Replaces the file by `head`, then the lines not yet read, then `tail` (at shutdown,
    /// when the database still refuses: everything not written, in order, for the next
    /// start). Written beside it and renamed over it, so a crash meanwhile keeps the old one.
    pub fn rewrite(&mut self, head: &[AudienceEvent], tail: &[AudienceEvent]) -> io::Result<()> {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest)?;
        let tmp = self.path.with_extension("jsonl.tmp");
        let mut out = File::create(&tmp)?;
        out.write_all(&encode(head))?;
        out.write_all(&rest)?;
        out.write_all(&encode(tail))?;
        out.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent()
            && let Ok(dir) = File::open(dir)
        {
            let _ = dir.sync_all();
        }
        Ok(())
    }

    /// Removes the (empty) file.
    pub fn remove(self) -> io::Result<()> {
        std::fs::remove_file(&self.path)
    }
}

/// The dead-letter line for `event`, refused for `reason`.
pub(super) fn dead_letter_line(event: &AudienceEvent, reason: &str, at_ms: i64) -> Vec<u8> {
    let mut out = serde_json::to_vec(&DeadLetter {
        refused_at_ms: at_ms,
        reason,
        line: event.into(),
    })
    .unwrap_or_default();
    out.push(b'\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joined(n: i64) -> AudienceEvent {
        AudienceEvent::ViewerJoined {
            id: ViewerId(n),
            session: SessionId(7),
            at_ms: 1_000 + n,
            terminal: "tv",
            viewer_key: format!("key-{n}"),
            client_hash: "h".into(),
        }
    }

    fn left(n: i64) -> AudienceEvent {
        AudienceEvent::ViewerLeft {
            id: ViewerId(n),
            at_ms: 2_000 + n,
        }
    }

    /// Events as comparable text (the event type has no `PartialEq`).
    fn text(events: &[AudienceEvent]) -> Vec<String> {
        events.iter().map(|e| format!("{e:?}")).collect()
    }

    #[test]
    fn events_come_back_in_order_across_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state").join(SPILL_FILE);
        let mut spill = SpillFile::open(&path).unwrap();
        let first = vec![joined(1), joined(2), left(1)];
        let second = vec![
            left(2),
            AudienceEvent::SessionEnded {
                session: SessionId(7),
                at_ms: 3_000,
            },
        ];
        spill.append(&first).unwrap();
        spill.append(&second).unwrap();
        assert_eq!(spill.unread(), 5);
        let (a, lines) = spill.read(2).unwrap();
        assert_eq!(lines, 2);
        // Appending while part is read keeps the order: the new line comes last.
        spill.append(&[joined(3)]).unwrap();
        let (b, _) = spill.read(100).unwrap();
        assert_eq!(spill.unread(), 0);
        let mut want = first.clone();
        want.extend(second.clone());
        want.push(joined(3));
        let got: Vec<AudienceEvent> = a.into_iter().chain(b).collect();
        assert_eq!(text(&got), text(&want));

        // A reopened file (the next start) reads everything again from the top.
        drop(spill);
        let mut again = SpillFile::open(&path).unwrap();
        assert_eq!(again.unread(), 6);
        let (all, _) = again.read(100).unwrap();
        assert_eq!(text(&all), text(&want));
        again.clear().unwrap();
        assert!(!again.has_lines());
        again.append(&[left(9)]).unwrap();
        assert_eq!(text(&again.read(10).unwrap().0), text(&[left(9)]));
    }

    #[test]
    fn a_torn_last_line_is_cut_off_and_later_lines_stay_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SPILL_FILE);
        let mut spill = SpillFile::open(&path).unwrap();
        spill.append(&[joined(1), left(1)]).unwrap();
        drop(spill);
        // A crash halfway through writing a line.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"event":"joined","id":2,"sess"#)
            .unwrap();
        drop(file);

        let mut spill = SpillFile::open(&path).unwrap();
        assert_eq!(spill.unread(), 2, "the torn line is not counted");
        spill.append(&[joined(3)]).unwrap();
        let (events, lines) = spill.read(10).unwrap();
        assert_eq!(lines, 3);
        assert_eq!(text(&events), text(&[joined(1), left(1), joined(3)]));
    }

    #[test]
    fn an_unreadable_line_is_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SPILL_FILE);
        let mut bytes = encode(&[joined(1)]);
        bytes.extend_from_slice(b"not json\n");
        bytes.extend(encode(&[left(1)]));
        std::fs::write(&path, bytes).unwrap();
        let mut spill = SpillFile::open(&path).unwrap();
        assert_eq!(spill.unread(), 3);
        let (events, lines) = spill.read(10).unwrap();
        assert_eq!(lines, 3);
        assert_eq!(text(&events), text(&[joined(1), left(1)]));
    }

    #[test]
    fn rewrite_keeps_memory_then_unread_lines_then_new_events() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SPILL_FILE);
        let mut spill = SpillFile::open(&path).unwrap();
        spill.append(&[joined(1), joined(2), joined(3)]).unwrap();
        // joined(1) was read into memory and is not written yet.
        let (head, _) = spill.read(1).unwrap();
        spill.rewrite(&head, &[left(3)]).unwrap();
        drop(spill);
        let mut next = SpillFile::open(&path).unwrap();
        let (events, _) = next.read(10).unwrap();
        assert_eq!(
            text(&events),
            text(&[joined(1), joined(2), joined(3), left(3)])
        );
        assert!(!dir.path().join("attendance-spill.jsonl.tmp").exists());
    }

    #[test]
    fn dead_letters_say_why() {
        let line = dead_letter_line(&left(4), "FOREIGN KEY constraint failed", 5);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["event"], "left");
        assert_eq!(v["id"], 4);
        assert_eq!(v["reason"], "FOREIGN KEY constraint failed");
        assert_eq!(v["refused_at_ms"], 5);
    }
}
