//! `[interaction]`: live chat, questions, likes and check-ins during a session.

use serde::Deserialize;

use super::ConfigError;

/// Live interaction (`[interaction]`): what residents may post and how fast, and the words
/// that hold a message for the host's review.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InteractionConfig {
    /// Longest message or question in characters (1-2000).
    pub max_message_chars: usize,
    /// Longest nickname in characters (1-64).
    pub max_nickname_chars: usize,
    /// One message or question per device at most this often (ms; 0: no limit).
    pub message_interval_ms: u64,
    /// One like request per device at most this often (ms; 0: no limit); a request carries
    /// the taps since the last one (`count`, at most `max_likes_per_post`).
    pub like_interval_ms: u64,
    /// The most likes one request may carry (1-1000).
    pub max_likes_per_post: u32,
    /// How often a channel's news goes out to its watchers, in one batch (50-2000 ms).
    pub batch_ms: u64,
    /// How many recent messages a new watcher gets on connecting (0-500).
    pub backlog: usize,
    /// Batches a watcher may fall behind before it is disconnected (its browser reconnects
    /// and starts again from the backlog); 4-1024.
    pub watcher_queue: usize,
    /// Messages containing any of these words (case-insensitive) are held: only the host
    /// sees them until the host approves them.
    pub held_words: Vec<String>,
}

impl Default for InteractionConfig {
    fn default() -> Self {
        Self {
            max_message_chars: 200,
            max_nickname_chars: 20,
            message_interval_ms: 2000,
            like_interval_ms: 1000,
            max_likes_per_post: 20,
            batch_ms: 200,
            backlog: 50,
            watcher_queue: 64,
            held_words: Vec::new(),
        }
    }
}

impl InteractionConfig {
    /// Rejects values the interaction service cannot run with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let checks: [(&str, bool, &str); 6] = [
            (
                "max_message_chars",
                (1..=2000).contains(&self.max_message_chars),
                "1 to 2000",
            ),
            (
                "max_nickname_chars",
                (1..=64).contains(&self.max_nickname_chars),
                "1 to 64",
            ),
            (
                "max_likes_per_post",
                (1..=1000).contains(&self.max_likes_per_post),
                "1 to 1000",
            ),
            (
                "batch_ms",
                (50..=2000).contains(&self.batch_ms),
                "50 to 2000",
            ),
            ("backlog", self.backlog <= 500, "0 to 500"),
            (
                "watcher_queue",
                (4..=1024).contains(&self.watcher_queue),
                "4 to 1024",
            ),
        ];
        for (key, ok, range) in checks {
            if !ok {
                return Err(ConfigError::Invalid(format!(
                    "interaction.{key} must be {range}"
                )));
            }
        }
        if self.held_words.iter().any(|w| w.trim().is_empty()) {
            return Err(ConfigError::Invalid(
                "interaction.held_words must not contain empty words (they would hold every message)"
                    .into(),
            ));
        }
        Ok(())
    }
}
