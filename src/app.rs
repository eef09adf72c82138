//! Wiring: catalog -> audience writer -> relay engine -> HTTP, and the shutdown order
//! (stop HTTP, close every peer so attendance rows are closed, drain the writer).
//!
//! The relay engine and the audience writer are watched: if either panics the server
//! does not limp on with HTTP up and no media or no attendance; [`run`] ends with an
//! error (a non-zero exit status, so systemd restarts it) within about a second.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{error, info, warn};

use crate::catalog::{AttendanceWriter, Catalog, WriterConfig, spawn_writer};
use crate::cluster::Cluster;
use crate::config::{ClusterConfig, Config};
use crate::device::DeviceIds;
use crate::http::serve::{Connections, Limits, TrustedProxies, https_redirect, serve};
use crate::http::tls::Tls;
use crate::http::{AppState, ResponsePolicy, routes_with_policy};
use crate::relay::{self, RelayHandle};

/// A started server. Tests start one on port 0 and read the bound addresses from here.
pub struct RunningServer {
    /// Where HTTP listens.
    pub http_addr: SocketAddr,
    /// Where the media UDP socket is bound.
    pub udp_addr: SocketAddr,
    /// The catalog, for tests and the CLI.
    pub catalog: Catalog,
    /// The relay, for tests.
    pub relay: RelayHandle,
    /// Where RTMP ingest listens, when enabled.
    pub rtmp_addr: Option<SocketAddr>,
    /// The certificate HTTPS serves, when `[http] tls` is on.
    pub tls: Option<Arc<Tls>>,
    /// Where plain HTTP is redirected to HTTPS, when `[http] redirect_listen` is set.
    pub redirect_addr: Option<SocketAddr>,
    ingest: crate::ingest::Ingest,
    stop_http: Vec<oneshot::Sender<()>>,
    http_task: JoinHandle<()>,
    /// Why a task the server cannot run without ended (see [`RunningServer::failed`]).
    failures: mpsc::UnboundedReceiver<String>,
    engine_task: JoinHandle<()>,
    writer: AttendanceWriter,
    /// Live HLS, whose players' rows close at shutdown.
    hls: Arc<crate::hls::Hls>,
    /// Replays, whose viewers are written at shutdown.
    replays: Arc<crate::recording::replays::Replays>,
    liveness_task: JoinHandle<()>,
    /// Cluster state when a member (left cleanly at shutdown).
    cluster: Option<Arc<Cluster>>,
}

/// Connects the catalog, starts the relay and HTTP, and returns once all are listening.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    let catalog = Catalog::connect(&config.catalog.database_url)
        .await
        .with_context(|| format!("opening catalog {}", config.catalog.database_url))?;
    let writer_config = WriterConfig::from_config(&config.catalog);
    let (mut audience, writer) = spawn_writer(catalog.clone(), writer_config.clone())
        .with_context(|| {
            format!(
                "opening the attendance spill file in {}",
                writer_config.state_dir.display()
            )
        })?;
    // Attendance a previous run left in the spill file goes in before what it left open
    // is closed, so its rows are closed with the rest.
    if !writer.leftover_written(Duration::from_secs(10)).await {
        warn!("attendance left by an earlier run is not written yet; it stays queued first");
    }
    let gone_after_ms = config.cluster.gone_after_secs as i64 * 1000;
    let closed = catalog.close_stale(gone_after_ms).await?;
    if closed > 0 {
        info!(closed, "closed sessions left open by an earlier run");
    }
    let (failed, failures) = mpsc::unbounded_channel();
    let mut writer_failure = writer.failure();
    let writer_failed = failed.clone();
    tokio::spawn(async move {
        if let Ok(why) = writer_failure.wait_for(Option::is_some).await {
            let why = why.clone().unwrap_or_default();
            let _ = writer_failed.send(format!("the audience writer failed: {why}"));
        }
    });
    audience.set_node(catalog.register_node().await?);
    let bridges = relay::CodecBridges {
        vp8_rendition: config.ingest.vp8_rendition,
        h264_from_vp8: config.ingest.h264_from_vp8,
    };
    let hls_audience = audience.sibling();
    let mut relay_config = config.relay.clone();
    relay_config.reconnect_grace = Duration::from_secs(config.hls.reconnect_grace_secs);
    let (relay, engine_task) = relay::start(&config.webrtc, &relay_config, bridges, audience)
        .await
        .with_context(|| format!("binding media UDP socket {}", config.webrtc.udp_bind))?;
    let engine_task = supervise("the relay engine", engine_task, failed);
    // A PostgreSQL catalog and a cluster secret: a member (claims, leases, edges).
    let cluster = if config.cluster.is_member(&config.catalog.database_url) {
        let pull_ip = config
            .webrtc
            .advertised_ips
            .first()
            .copied()
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        let media_addr = SocketAddr::new(pull_ip, relay.udp_addr().port());
        let cluster = Cluster::new(catalog.clone(), relay.clone(), &config.cluster, pull_ip);
        catalog
            .join_cluster(
                cluster.node_url(),
                &media_addr.to_string(),
                config.cluster.max_viewers,
                config.cluster.gone_after_secs as i64 * 1000,
            )
            .await
            .context("registering this node in the cluster")?;
        if let Err(e) = cluster.tick().await {
            warn!(error = %e, "first cluster heartbeat failed");
        }
        tokio::spawn(cluster.clone().listen());
        info!(node_url = cluster.node_url(), node = ?catalog.this_node(), "cluster member");
        Some(cluster)
    } else {
        None
    };
    let liveness_task = tokio::spawn(keep_alive(
        catalog.clone(),
        config.cluster.clone(),
        cluster.clone(),
    ));
    let ingest = crate::ingest::start(&config.ingest, catalog.clone(), relay.sources())
        .await
        .with_context(|| format!("starting ingest (RTMP {:?})", config.ingest.rtmp_listen))?;
    let state_dir = config.catalog.state_dir();
    // In a cluster every node issues and accepts the same device ids: the secret is
    // derived from the cluster secret (never the cluster secret itself).
    let device_ids = Arc::new(match (&cluster, &config.cluster.secret) {
        (Some(_), Some(secret)) => {
            use sha2::Digest;
            let mut derive = sha2::Sha256::new();
            derive.update(
                b"feiyan device ids
",
            );
            derive.update(secret.as_bytes());
            DeviceIds::from_secret(&derive.finalize())
        }
        _ => DeviceIds::load_or_create(&state_dir).with_context(|| {
            format!(
                "reading or making the device-id secret {}",
                state_dir.join(crate::device::KEY_FILE).display()
            )
        })?,
    });
    let salt: [u8; 16] = rand::random();
    let recorder = crate::recording::recorder::Recorder::start(&config.recording, catalog.clone())
        .with_context(|| {
            format!(
                "making the recordings folder {}",
                config.recording.dir.display()
            )
        })?;
    // The sessions this node feeds as a cluster edge.
    let edge_sessions = cluster.as_ref().map(|cluster| {
        let edge = Arc::downgrade(cluster);
        let skip: crate::recording::recorder::SkipSession =
            Arc::new(move |session| edge.upgrade().is_some_and(|c| c.is_edge_session(session)));
        skip
    });
    if let Some(edge_sessions) = &edge_sessions {
        // One recording per session, where its publisher is; an edge's codec bridges come
        // from its origin (one encoder for all its edges).
        recorder.skip_sessions(edge_sessions.clone());
        ingest.bridges_elsewhere(edge_sessions.clone());
    }
    let hls = crate::hls::Hls::start(
        relay.sources(),
        crate::hls::HlsSettings {
            targets: crate::hls::segmenter::Targets {
                segment: config.hls.segment_secs,
                part: config.hls.part_secs,
            },
            grace: Duration::from_secs(config.hls.reconnect_grace_secs),
            salt,
        },
        hls_audience,
        device_ids.clone(),
        Some(recorder.clone() as Arc<dyn crate::hls::service::SegmentSink>),
    );
    if let (Some(cluster), Some(edge_sessions)) = (&cluster, edge_sessions) {
        // An edge's pulled copy is not cut here: its HLS comes from the origin.
        hls.skip_sessions(edge_sessions);
        hls.set_upstream(crate::cluster::hls::EdgeHls::new(cluster.clone()));
    }
    let replays = crate::recording::replays::Replays::new(
        catalog.clone(),
        config.recording.dir.clone(),
        device_ids.clone(),
        config.hls.segment_secs,
    );
    // Both listeners count against one set of caps (`[http] max_connections`, ...).
    let connections = Arc::new(Connections::default());
    let state = Arc::new(AppState {
        catalog: catalog.clone(),
        relay: relay.clone(),
        max_sdp_bytes: config.http.max_sdp_bytes,
        salt,
        hls: hls.clone(),
        pull: ingest.pull.clone(),
        rtmp_counters: ingest.rtmp_counters.clone(),
        login_throttle: Default::default(),
        whep_rate: crate::http::rate::RateLimiter::new(
            config.http.whep_posts_per_sec,
            config.http.whep_post_burst,
            crate::http::rate::TRACKED_CLIENTS,
        ),
        password_checks: crate::catalog::PasswordChecks::new(
            config.http.login_checks,
            Duration::from_millis(config.http.login_wait_ms),
        ),
        ice_lite: config.webrtc.ice_lite,
        device_ids,
        https: config.http.tls != crate::config::TlsMode::Off,
        vendor_dir: config.http.vendor_dir.clone(),
        replays: replays.clone(),
        connections: connections.clone(),
        interaction: crate::interaction::Interaction::start(
            config.interaction.clone(),
            catalog.clone(),
        ),
        cluster: cluster.clone(),
    });
    let tls = tls_from_config(&config)?;
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding HTTP {}", config.http.listen))?;
    let http_addr = listener.local_addr()?;
    let limits = Limits::from_config(&config.http);
    let mut stop_http = Vec::new();
    let redirect_addr = match config.http.redirect_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the HTTPS redirect {addr}"))?;
            let bound = listener.local_addr()?;
            let (stop, stopped) = oneshot::channel::<()>();
            stop_http.push(stop);
            let redirect = https_redirect(http_addr.port());
            let proxies = TrustedProxies::default();
            let counted = connections.clone();
            tokio::spawn(serve(
                listener, redirect, limits, None, proxies, counted, stopped,
            ));
            Some(bound)
        }
        None => None,
    };
    let (stop, stopped) = oneshot::channel::<()>();
    stop_http.push(stop);
    let acceptor = tls.as_ref().map(|tls| tls.acceptor());
    // HSTS only with a certificate from files: a browser told to insist on HTTPS could not
    // be clicked past a self-signed certificate that was made again.
    let policy = ResponsePolicy::new(&[], config.http.tls == crate::config::TlsMode::Files);
    let routes = routes_with_policy(state, policy);
    let proxies = TrustedProxies::new(config.http.trusted_proxies.clone());
    let http_task = tokio::spawn(serve(
        listener,
        routes,
        limits,
        acceptor,
        proxies,
        connections,
        stopped,
    ));
    info!(%http_addr, udp = %relay.udp_addr(), https = tls.is_some(), "feiyan listening");
    Ok(RunningServer {
        http_addr,
        udp_addr: relay.udp_addr(),
        catalog,
        relay,
        rtmp_addr: ingest.rtmp_addr,
        tls,
        redirect_addr,
        ingest,
        stop_http,
        http_task,
        failures,
        engine_task,
        writer,
        hls,
        replays,
        liveness_task,
        cluster,
    })
}

/// The certificate `[http] tls` asks for, made or loaded (a clear error naming the file
/// when it cannot be).
fn tls_from_config(config: &Config) -> anyhow::Result<Option<Arc<Tls>>> {
    let mut names: Vec<String> = config
        .webrtc
        .advertised_ips
        .iter()
        .map(|ip| ip.to_string())
        .collect();
    let listen = config.http.listen.ip();
    if !listen.is_unspecified() {
        names.push(listen.to_string());
    }
    let state_dir = config.catalog.state_dir();
    let tls = Tls::from_config(&config.http, &names, &state_dir)?;
    if let Some(tls) = &tls {
        let prints = tls.fingerprints();
        info!(
            certificate = %tls.describe(),
            sha256 = %prints.sha256,
            spki_sha256 = %prints.spki_sha256,
            "HTTPS on"
        );
    }
    Ok(tls.map(Arc::new))
}

/// Watches a task the server cannot run without: when it panics or ends early, says why
/// on `failed`. Returns a handle that ends when the task does.
fn supervise(
    name: &'static str,
    task: JoinHandle<()>,
    failed: mpsc::UnboundedSender<String>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        match task.await {
            Ok(()) => {}
            Err(e) if e.is_panic() => {
                let what = crate::catalog::panic_message(&*e.into_panic());
                let _ = failed.send(format!("{name} panicked: {what}"));
            }
            Err(e) => {
                let _ = failed.send(format!("{name} was cancelled: {e}"));
            }
        }
    })
}

/// Notes in the catalog every `heartbeat_secs` that this server is alive, and closes what
/// servers silent for `gone_after_secs` left open (servers sharing a PostgreSQL catalog,
/// or this one's crashed predecessor), until the server stops. Both by the database's
/// clock.
async fn keep_alive(catalog: Catalog, cluster: ClusterConfig, member: Option<Arc<Cluster>>) {
    let mut tick = tokio::time::interval(Duration::from_secs(cluster.heartbeat_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        // A member's heartbeat carries its load (and releases claims of ended sessions).
        let beat = match &member {
            Some(member) => member.tick().await,
            None => catalog.heartbeat().await,
        };
        if let Err(e) = beat {
            warn!(error = %e, "could not note this server alive in the catalog");
            continue;
        }
        match catalog
            .close_gone(cluster.gone_after_secs as i64 * 1000)
            .await
        {
            Ok(0) => {}
            Ok(closed) => info!(closed, "closed sessions of a server that is gone"),
            Err(e) => warn!(error = %e, "could not close sessions of gone servers"),
        }
        // Residents' requests whose session ended are done; phones of requests closed
        // 90 days ago go.
        let now = crate::audience::now_ms();
        if let Err(e) = catalog.settle_requests(now).await {
            warn!(error = %e, "could not settle residents' requests");
        }
        if let Err(e) = catalog.forget_phones(now).await {
            warn!(error = %e, "could not forget old requests' phone numbers");
        }
    }
}

impl RunningServer {
    /// Base URL of the HTTP side, e.g. `http://127.0.0.1:41234` (`https://` with TLS).
    pub fn base_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.http_addr)
    }

    /// Waits until a task the server cannot run without (the relay engine, the audience
    /// writer) panics or ends on its own, and says which and why.
    pub async fn failed(&mut self) -> String {
        self.failures
            .recv()
            .await
            .unwrap_or_else(|| "the server's watchers ended".into())
    }

    /// After [`RunningServer::failed`]: stops HTTP and gives the writer a moment to write
    /// what was queued (the rest of the attendance is closed at the next start).
    pub async fn abandon(self) {
        self.liveness_task.abort();
        for stop in self.stop_http {
            let _ = stop.send(());
        }
        drop(self.relay);
        let finish = self.writer.finish(Duration::from_millis(1000));
        let _ = tokio::time::timeout(Duration::from_millis(1500), finish).await;
    }

    /// Stops in order: HTTP, relay (closing attendance), then the writer drains; what the
    /// database still refuses after 10 s is left in the spill file for the next start.
    pub async fn shutdown(self) {
        self.liveness_task.abort();
        if let Some(cluster) = &self.cluster {
            cluster.leave().await;
        }
        for stop in self.stop_http {
            let _ = stop.send(());
        }
        self.ingest.shutdown().await;
        self.relay.shutdown().await;
        let _ = self.engine_task.await;
        self.hls.shutdown();
        self.replays.shutdown().await;
        drop(self.relay);
        // The HTTP task may hold relay handles until its connections finish.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.http_task).await;
        if !self.writer.finish(Duration::from_secs(10)).await {
            warn!("the catalog refused attendance until shutdown; it is kept in the spill file");
        }
    }
}

/// Runs until Ctrl-C or SIGTERM, or until the relay engine or the audience writer fails
/// (an error, so the process exits non-zero). SIGHUP re-reads the TLS certificate.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let mut server = start(config).await?;
    let base = server.base_url();
    println!(
        "feiyan is running: {base}/  (media UDP {})",
        server.udp_addr
    );
    if let Some(tls) = &server.tls {
        let prints = tls.fingerprints();
        println!("HTTPS certificate: {}", tls.describe());
        println!("  SHA-256 fingerprint: {}", prints.sha256);
        println!("  SPKI SHA-256 (base64): {}", prints.spki_sha256);
        tokio::spawn(reload_on_hangup(tls.clone()));
    }
    if let Ok(fault) = std::env::var("FEIYAN_FAULT") {
        inject(&server, &fault)?;
    }
    let failure = tokio::select! {
        _ = wait_for_signal() => None,
        why = server.failed() => Some(why),
    };
    match failure {
        None => {
            info!("shutting down");
            server.shutdown().await;
            Ok(())
        }
        Some(why) => {
            error!(%why, "stopping: the server cannot go on without it");
            server.abandon().await;
            Err(anyhow::anyhow!("{why}"))
        }
    }
}

/// `FEIYAN_FAULT=engine-panic[@MS]`: make the relay engine panic MS milliseconds after
/// start (default 1000), so an operator (or a test) can see the process exit and the
/// service manager restart it. Nothing else reads it.
fn inject(server: &RunningServer, fault: &str) -> anyhow::Result<()> {
    let (what, after) = fault.split_once('@').unwrap_or((fault, "1000"));
    let after_ms: u64 = after
        .parse()
        .with_context(|| format!("FEIYAN_FAULT={fault:?}: the delay after @ is in ms"))?;
    match what {
        "engine-panic" => {
            warn!(after_ms, "FEIYAN_FAULT: the relay engine will panic");
            let relay = server.relay.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(after_ms)).await;
                relay.inject_panic().await;
            });
            Ok(())
        }
        other => anyhow::bail!("FEIYAN_FAULT={other:?} is unknown; the one fault is engine-panic"),
    }
}

/// Re-reads the certificate on every SIGHUP; a failed reload keeps serving the old one.
async fn reload_on_hangup(tls: Arc<Tls>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            warn!("cannot listen for SIGHUP; the TLS certificate is read at start only");
            return;
        };
        while hangup.recv().await.is_some() {
            match tls.reload() {
                Ok(prints) => info!(
                    certificate = %tls.describe(),
                    sha256 = %prints.sha256,
                    "TLS certificate reloaded"
                ),
                Err(e) => {
                    error!(error = %e, "TLS certificate not reloaded; serving the previous one")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tls;
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
