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
//! WHIP publisher --HTTP offer--> http::whip --> relay engine (one UDP socket, all peers)
//!                                                 |  keyframe cache, header rewrite, SRTP
//! WHEP viewers  <--------- RTP over the same UDP socket ----+
//!                                                 |
//!                       audience events --bounded queue--> catalog writer --> SQLite | PostgreSQL
//! ```
//!
//! ## Modules
//! - [`config`]: TOML config with environment overrides.
//! - [`relay`]: the hub; WebRTC peers driven sans-IO by one engine task.
//! - [`audience`]: attendance events, the relay's queue end to the catalog writer, the clock.
//! - [`catalog`]: sqlx catalog (hierarchy, sessions, attendance) and the batching writer.
//! - [`http`]: WHIP/WHEP resources, JSON API, pages.
//! - [`cli`]: the `feiyan` command line, one file per command group.
//! - [`client`]: a standards-following WHIP/WHEP client (tests, benchmark, demo source).
//! - [`app`]: wiring and shutdown order.

#![recursion_limit = "256"]

pub mod app;
pub mod audience;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod config;
pub mod http;
pub mod ids;
pub mod ingest;
pub mod media;
pub mod relay;
pub mod transcode;
