//! Wiring: catalog -> audience writer -> relay engine -> HTTP, and the shutdown order
//! (stop HTTP, close every peer so attendance rows are closed, drain the writer).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::catalog::{AttendanceWriter, Catalog, WriterConfig, spawn_writer};
use crate::config::{ClusterConfig, Config};
use crate::http::{AppState, routes};
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
    ingest: crate::ingest::Ingest,
    stop_http: oneshot::Sender<()>,
    http_task: JoinHandle<()>,
    engine_task: JoinHandle<()>,
    writer: AttendanceWriter,
    liveness_task: JoinHandle<()>,
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
    audience.set_node(catalog.register_node().await?);
    let liveness_task = tokio::spawn(keep_alive(catalog.clone(), config.cluster.clone()));
    let (relay, engine_task) = relay::start(&config.webrtc, &config.relay, audience)
        .await
        .with_context(|| format!("binding media UDP socket {}", config.webrtc.udp_bind))?;
    let ingest = crate::ingest::start(&config.ingest, catalog.clone(), relay.sources())
        .await
        .with_context(|| format!("starting ingest (RTMP {:?})", config.ingest.rtmp_listen))?;
    let state = Arc::new(AppState {
        catalog: catalog.clone(),
        relay: relay.clone(),
        max_sdp_bytes: config.http.max_sdp_bytes,
        salt: rand::random(),
        pull: ingest.pull.clone(),
        login_throttle: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding HTTP {}", config.http.listen))?;
    let http_addr = listener.local_addr()?;
    let (stop_http, stopped) = oneshot::channel::<()>();
    let http_task = tokio::spawn(crate::http::serve::serve(
        listener,
        routes(state),
        Duration::from_secs(config.http.idle_timeout_secs),
        stopped,
    ));
    info!(%http_addr, udp = %relay.udp_addr(), "feiyan listening");
    Ok(RunningServer {
        http_addr,
        udp_addr: relay.udp_addr(),
        catalog,
        relay,
        rtmp_addr: ingest.rtmp_addr,
        ingest,
        stop_http,
        http_task,
        engine_task,
        writer,
        liveness_task,
    })
}

/// Notes in the catalog every `heartbeat_secs` that this server is alive, and closes what
/// servers silent for `gone_after_secs` left open (servers sharing a PostgreSQL catalog,
/// or this one's crashed predecessor), until the server stops. Both by the database's
/// clock.
async fn keep_alive(catalog: Catalog, cluster: ClusterConfig) {
    let mut tick = tokio::time::interval(Duration::from_secs(cluster.heartbeat_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = catalog.heartbeat().await {
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
    }
}

impl RunningServer {
    /// Base URL of the HTTP side, e.g. `http://127.0.0.1:41234`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// Stops in order: HTTP, relay (closing attendance), then the writer drains; what the
    /// database still refuses after 10 s is left in the spill file for the next start.
    pub async fn shutdown(self) {
        self.liveness_task.abort();
        let _ = self.stop_http.send(());
        self.ingest.shutdown().await;
        self.relay.shutdown().await;
        let _ = self.engine_task.await;
        drop(self.relay);
        // The HTTP task may hold relay handles until its connections finish.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.http_task).await;
        if !self.writer.finish(Duration::from_secs(10)).await {
            warn!("the catalog refused attendance until shutdown; it is kept in the spill file");
        }
    }
}

/// Runs until Ctrl-C or SIGTERM.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let server = start(config).await?;
    let base = server.base_url();
    println!(
        "feiyan is running: {base}/  (media UDP {})",
        server.udp_addr
    );
    wait_for_signal().await;
    info!("shutting down");
    server.shutdown().await;
    Ok(())
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
