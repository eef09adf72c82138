//! # feiyan
//!
//! A livestream and media-hub server for a city's civic-practice network: stations
//! (站) publish lectures and film classes, residents watch in browsers, and a catalog
//! counts every viewer for administrators.
//!
//! `ARCHITECTURE.md` at the repository root is the map for a newcomer: every module, the
//! data flow, which module may import which (the one copy of that graph, which
//! `tests/module_graph.rs` enforces), who owns time and where errors become status codes.
//!
//! ## Data flow
//! ```text
//! WHIP publisher --HTTP offer--> http --> relay
//! RTMP / pull / film --> ingest --> transcode (FFmpeg threads) --> ingest --SourceHandle--> relay
//!
//! relay = engine (UDP socket, WebRTC peers, clock) around hub (sans-IO: channels, caches)
//!   |-- WHEP viewers: header rewrite, SRTP, batched sends on the one UDP socket
//!   |-- access units once per channel (RelayHandle::subscribe): HLS, recording, edges
//!   '-- audience events --bounded queue--> catalog writer --> SQLite | PostgreSQL
//! ```
//!
//! ## Modules
//! - [`config`]: settings, environment overrides and all validation (a leaf).
//! - [`ids`], [`media`], [`audience`]: types every module shares (typed ids; access units;
//!   attendance events, their queue end and the wall clock).
//! - [`device`]: the signed device id (`fy_dev`) and the User-Agent's terminal kind (a leaf).
//! - [`relay`]: the sans-IO hub ([`relay::hub`]) and the engine task around it.
//! - [`ingest`]: RTMP, pull sources and film playout into the relay.
//! - [`transcode`]: the only FFmpeg user, on its own threads.
//! - [`interaction`]: live chat, questions, likes and check-ins, batched to watchers.
//! - [`catalog`]: sqlx catalog (hierarchy, sessions, attendance, statistics) and the writer.
//! - [`http`]: WHIP/WHEP resources, JSON API, pages, CSV; errors become statuses here.
//! - [`cli`]: the `feiyan` command line, one file per command group.
//! - [`client`]: a standards-following WHIP/WHEP client (tests, benchmarks, demo source).
//! - [`app`]: wiring and shutdown order.
//! - `fuzzing` (hidden): the mutation fuzzer of the parsers of peers' and files' bytes
//!   (`tests/fuzz.rs`, `scripts/fuzz.sh`).

#![recursion_limit = "256"]

pub mod app;
pub mod audience;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod config;
pub mod device;
#[doc(hidden)]
pub mod fuzzing;
pub mod hls;
pub mod http;
pub mod ids;
pub mod ingest;
pub mod interaction;
pub mod media;
pub mod recording;
pub mod redact;
pub mod relay;
pub mod transcode;
