//! HLS on an edge comes from the origin (../shared/DECISIONS.md): a request here for
//! `/hls/{channel}/...` of a channel live on another node is fetched from that node's
//! `/hls/...` over HTTP, signed like pulls ([`super::sign`], `GET` and the path), and
//! shared: segments, parts and init segments are immutable once cut, so they are kept by
//! name (bounded to [`CACHE_BYTES`], oldest out first); a playlist (a blocking reload's
//! `_HLS_msn`/`_HLS_part` forwarded) is reused for at most a part target. Players asking
//! for the same thing at once wait on one fetch, so N players here cost the origin one
//! fetch per segment. The edge cuts and records nothing of its own for such a channel
//! (`Cluster::is_edge_session` keeps live HLS and the recorder off its pulled copy).
//!
//! The origin side: [`EdgeHls`] also checks those signatures (a signed fetch is not a
//! player: no `vid`, no count) and counts what it served, for `/metrics`.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::OnceCell;
use tracing::warn;

use super::{Cluster, lock, sign};
use crate::audience::now_ms;
use crate::catalog::Origin;
use crate::hls::upstream::{SIGNATURE_HEADER, Upstream, UpstreamRequest, Upstreamed};
use crate::ids::ChannelName;

/// Most bytes of segments and parts kept (the oldest go first).
pub const CACHE_BYTES: usize = 64 << 20;

/// How long a channel's origin (or that it has none) is taken as known.
const ORIGIN_KNOWN: Duration = Duration::from_secs(1);

/// Longest wait for the origin: its blocking reloads hold up to three segment targets.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// One fetch's result, shared by everyone who asked for it.
struct Got {
    status: u16,
    content_type: String,
    body: Bytes,
    /// When it arrived (a playlist is reused for a part target after).
    at: Instant,
}

/// A fetch under way or done.
type Flight = Arc<OnceCell<Arc<Got>>>;

#[derive(Default)]
struct Cache {
    /// Fetches by URL path and query: under way, or done and still fresh.
    flights: HashMap<String, Flight>,
    /// Immutable media by path, with the order they came in.
    media: HashMap<String, Bytes>,
    order: VecDeque<String>,
    bytes: usize,
}

/// Figures for `/metrics`.
#[derive(Debug, Default)]
pub struct HlsCounters {
    /// Signed playlist fetches this node answered as an origin.
    pub served_playlists: AtomicU64,
    /// Signed media fetches (segments, parts, init segments) answered as an origin.
    pub served_media: AtomicU64,
    /// Playlists this node fetched from an origin.
    pub fetched_playlists: AtomicU64,
    /// Media this node fetched from an origin.
    pub fetched_media: AtomicU64,
    /// Requests here answered from the cache or a fetch already under way.
    pub shared: AtomicU64,
}

/// A member's HLS across nodes.
pub struct EdgeHls {
    cluster: Arc<Cluster>,
    http: reqwest::Client,
    origins: std::sync::Mutex<HashMap<ChannelName, (Instant, Option<Origin>)>>,
    cache: std::sync::Mutex<Cache>,
    /// Figures for `/metrics`.
    pub counters: HlsCounters,
}

impl EdgeHls {
    /// For `cluster`'s node.
    pub fn new(cluster: Arc<Cluster>) -> Arc<EdgeHls> {
        Arc::new(EdgeHls {
            cluster,
            http: reqwest::Client::builder()
                .timeout(FETCH_TIMEOUT)
                .build()
                .unwrap_or_default(),
            origins: Default::default(),
            cache: Default::default(),
            counters: HlsCounters::default(),
        })
    }

    /// The node `channel` is live on, if another (looked up at most once a second).
    async fn origin(&self, channel: &ChannelName) -> Option<Origin> {
        if let Some((at, origin)) = lock(&self.origins).get(channel)
            && at.elapsed() < ORIGIN_KNOWN
        {
            return origin.clone();
        }
        let origin = match self.cluster.catalog.channel_origin(channel).await {
            Ok(origin) => origin,
            Err(e) => {
                warn!(%channel, error = %e, "cannot look up the channel's origin for HLS");
                None
            }
        };
        let mut origins = lock(&self.origins);
        origins.retain(|_, (at, _)| at.elapsed() < ORIGIN_KNOWN);
        origins.insert(channel.clone(), (Instant::now(), origin.clone()));
        origin
    }

    /// One GET of the origin, signed.
    async fn get(&self, origin: &Origin, path: &str, query: &str) -> Got {
        let url = format!(
            "{}{path}{}{query}",
            origin.node_url.trim_end_matches('/'),
            if query.is_empty() { "" } else { "?" }
        );
        let signature = sign::sign(self.cluster.secret(), "GET", path, now_ms() / 1000);
        let answer = self
            .http
            .get(&url)
            .header(SIGNATURE_HEADER, signature)
            .send()
            .await;
        let failed = |why: String| Got {
            status: 502,
            content_type: "text/plain; charset=utf-8".into(),
            body: Bytes::from(format!(
                "the channel is live on {}, which did not answer: {why}\n",
                origin.node_url
            )),
            at: Instant::now(),
        };
        let response = match answer {
            Ok(r) => r,
            Err(e) => return failed(e.to_string()),
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/octet-stream")
            .to_string();
        match response.bytes().await {
            Ok(body) => Got {
                status,
                content_type,
                body,
                at: Instant::now(),
            },
            Err(e) => failed(e.to_string()),
        }
    }

    /// `path?query` from the origin: from the cache, a fetch under way, or a new fetch.
    async fn shared_get(
        &self,
        origin: &Origin,
        path: &str,
        query: &str,
        playlist: bool,
        ttl: Duration,
    ) -> Arc<Got> {
        let key = format!("{}|{path}?{query}", origin.node_url);
        let flight = {
            let mut cache = lock(&self.cache);
            if !playlist && let Some(body) = cache.media.get(&key) {
                self.counters.shared.fetch_add(1, Ordering::Relaxed);
                return Arc::new(Got {
                    status: 200,
                    content_type: String::new(),
                    body: body.clone(),
                    at: Instant::now(),
                });
            }
            let fresh = |f: &Flight| {
                f.get()
                    .is_none_or(|g| g.status == 200 && g.at.elapsed() < ttl)
            };
            match cache.flights.get(&key) {
                Some(f) if fresh(f) => {
                    self.counters.shared.fetch_add(1, Ordering::Relaxed);
                    f.clone()
                }
                _ => {
                    // Done playlists past their time go (a media fetch leaves on completion).
                    cache.flights.retain(|_, f| {
                        f.get()
                            .is_none_or(|g| g.status == 200 && g.at.elapsed() < ttl)
                    });
                    let f = Flight::default();
                    cache.flights.insert(key.clone(), f.clone());
                    f
                }
            }
        };
        let got = flight
            .get_or_init(|| async {
                let counter = if playlist {
                    &self.counters.fetched_playlists
                } else {
                    &self.counters.fetched_media
                };
                counter.fetch_add(1, Ordering::Relaxed);
                Arc::new(self.get(origin, path, query).await)
            })
            .await
            .clone();
        if !playlist {
            let mut cache = lock(&self.cache);
            let cache = &mut *cache;
            if cache
                .flights
                .get(&key)
                .is_some_and(|f| Arc::ptr_eq(f, &flight))
            {
                cache.flights.remove(&key);
            }
            if got.status == 200 && !cache.media.contains_key(&key) {
                cache.media.insert(key.clone(), got.body.clone());
                cache.order.push_back(key);
                cache.bytes += got.body.len();
                while cache.bytes > CACHE_BYTES {
                    let Some(old) = cache.order.pop_front() else {
                        break;
                    };
                    if let Some(body) = cache.media.remove(&old) {
                        cache.bytes -= body.len();
                    }
                }
            }
        }
        got
    }
}

#[async_trait::async_trait]
impl Upstream for EdgeHls {
    fn signed(&self, path: &str, header: Option<&str>) -> bool {
        let checked = sign::verify(self.cluster.secret(), "GET", path, header, now_ms() / 1000);
        if checked.is_err() {
            self.cluster
                .counters
                .signatures_refused
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let counter = if path.ends_with(".m3u8") {
            &self.counters.served_playlists
        } else {
            &self.counters.served_media
        };
        counter.fetch_add(1, Ordering::Relaxed);
        true
    }

    async fn fetch(&self, request: UpstreamRequest<'_>) -> Option<Upstreamed> {
        let origin = self.origin(request.channel).await?;
        let path = format!("/hls/{}", request.path);
        let got = self
            .shared_get(
                &origin,
                &path,
                &request.query,
                request.playlist,
                request.playlist_ttl,
            )
            .await;
        Some(Upstreamed {
            status: got.status,
            content_type: got.content_type.clone(),
            body: got.body.clone(),
            session: origin.session,
        })
    }

    fn metrics(&self) -> String {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let node = self.cluster.catalog.this_node().unwrap_or(0);
        let labels = format!("node=\"{node}\"");
        let cached = lock(&self.cache).bytes as u64;
        let mut out = String::new();
        for (name, help, kind, value) in [
            (
                "feiyan_cluster_hls_served_playlists_total",
                "signed HLS playlist fetches answered as an origin",
                "counter",
                get(&c.served_playlists),
            ),
            (
                "feiyan_cluster_hls_served_media_total",
                "signed HLS segment, part and init fetches answered as an origin",
                "counter",
                get(&c.served_media),
            ),
            (
                "feiyan_cluster_hls_fetched_playlists_total",
                "HLS playlists fetched from an origin",
                "counter",
                get(&c.fetched_playlists),
            ),
            (
                "feiyan_cluster_hls_fetched_media_total",
                "HLS segments, parts and init segments fetched from an origin",
                "counter",
                get(&c.fetched_media),
            ),
            (
                "feiyan_cluster_hls_shared_total",
                "HLS requests answered from the cache or a fetch under way",
                "counter",
                get(&c.shared),
            ),
            (
                "feiyan_cluster_hls_cache_bytes",
                "bytes of origin HLS media kept here",
                "gauge",
                cached,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{{labels}}} {value}\n"
            ));
        }
        out
    }
}

/// The other alive nodes' URLs, as last read (at most every [`NODES_KNOWN`]).
static OTHER_NODES: std::sync::Mutex<Option<(Instant, Vec<String>)>> = std::sync::Mutex::new(None);

/// How long the list of other nodes the watch page fails over to is reused.
const NODES_KNOWN: Duration = Duration::from_secs(5);

impl Cluster {
    /// The other alive nodes' `node_url`s, for the watch page to go to when this node
    /// stops answering (read from the registry at most every [`NODES_KNOWN`], however many
    /// pages ask).
    pub async fn other_node_urls(&self) -> Vec<String> {
        if let Some((at, urls)) = &*lock(&OTHER_NODES)
            && at.elapsed() < NODES_KNOWN
        {
            return urls.clone();
        }
        let me = self.catalog.this_node();
        let urls: Vec<String> = match self.catalog.cluster_nodes().await {
            Ok(nodes) => nodes
                .into_iter()
                .filter(|n| n.alive && Some(n.id) != me && !n.node_url.is_empty())
                .map(|n| n.node_url)
                .filter(|u| u.trim_end_matches('/') != self.node_url)
                .collect(),
            Err(e) => {
                warn!(error = %e, "cannot list the cluster's nodes");
                Vec::new()
            }
        };
        *lock(&OTHER_NODES) = Some((Instant::now(), urls.clone()));
        urls
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_hls_signature_header_is_the_pulls_one() {
        assert_eq!(crate::hls::upstream::SIGNATURE_HEADER, super::sign::HEADER);
    }
}
