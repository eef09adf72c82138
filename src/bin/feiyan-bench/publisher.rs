//! The WHIP publisher on a thread of its own.

use std::sync::Arc;

use feiyan::client::{PublisherOptions, SyntheticMedia, WhipPublisher};

use crate::BenchError;

/// The publisher and the thread whose runtime drives it.
pub struct PublisherThread {
    /// Shared with the benchmark, which reads counters and stops the media.
    pub publisher: Arc<WhipPublisher>,
    /// Tells the thread to DELETE the session and exit.
    stop_tx: tokio::sync::oneshot::Sender<()>,
    /// Joined at the end so the DELETE completes before the process exits.
    thread: std::thread::JoinHandle<()>,
}

impl PublisherThread {
    pub fn start(
        url: String,
        token: Option<String>,
        media: SyntheticMedia,
        opts: PublisherOptions,
    ) -> Result<Self, BenchError> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("whip-publisher".to_owned())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(BenchError::Setup(format!("tokio: {e}"))));
                        return;
                    }
                };
                rt.block_on(async move {
                    eprintln!("publishing to {url} ...");
                    match WhipPublisher::connect(&url, token.as_deref(), media, opts).await {
                        Ok(p) => {
                            let p = Arc::new(p);
                            let _ = ready_tx.send(Ok(p.clone()));
                            let _ = stop_rx.await;
                            if let Err(e) = p.stop().await {
                                eprintln!("publisher DELETE: {e}");
                            }
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.into()));
                        }
                    }
                });
            })
            .map_err(|e| BenchError::Setup(format!("spawning the publisher thread: {e}")))?;
        let publisher = ready_rx
            .recv()
            .map_err(|_| BenchError::Setup("publisher thread exited".to_owned()))??;
        Ok(Self {
            publisher,
            stop_tx,
            thread,
        })
    }

    /// Sends DELETE for the publisher session and waits for the thread.
    pub fn stop(self) {
        let _ = self.stop_tx.send(());
        let _ = self.thread.join();
    }
}
