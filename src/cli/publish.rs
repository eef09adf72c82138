//! `feiyan publish`: a generated test programme sent to a WHIP endpoint, as a demo source
//! and a way to check any WHIP server.

use anyhow::Context;
use clap::Args;

use crate::client::{PublisherOptions, SyntheticMedia, WhipPublisher, make_test_media};

/// `feiyan publish --url URL --key KEY [--kbps N]`
#[derive(Args)]
pub struct Publish {
    /// WHIP endpoint, e.g. http://127.0.0.1:8080/whip/st-1
    #[arg(long)]
    url: String,
    /// Stream key (sent as Authorization: Bearer).
    #[arg(long)]
    key: String,
    /// Video bitrate in kbit/s.
    #[arg(long, default_value_t = 600)]
    kbps: u32,
}

/// Makes 20 s of colour bars and a tone with the ffmpeg CLI and publishes them in a loop
/// until Ctrl-C.
pub async fn run(Publish { url, key, kbps }: Publish) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().to_path_buf();
    let media = tokio::task::spawn_blocking(move || -> anyhow::Result<SyntheticMedia> {
        let (h264, ogg) = make_test_media(&path, std::time::Duration::from_secs(20), kbps)?;
        Ok(SyntheticMedia::load(&h264, &ogg)?)
    })
    .await??;
    let options = PublisherOptions {
        record_send_log: false,
        ..Default::default()
    };
    let publisher = WhipPublisher::connect(&url, Some(&key), media, options)
        .await
        .context("publishing the test programme")?;
    println!("publishing test programme to {url} (Ctrl-C stops)");
    tokio::signal::ctrl_c().await?;
    publisher.stop().await?;
    Ok(())
}
