//! `feiyan`: parse flags, set up logging, run the command (`feiyan::cli`).

use clap::Parser;

/// jemalloc instead of glibc's allocator: a viewer's setup (SDP, DTLS, HTTP) frees most
/// of what it allocates between its long-lived state, and glibc keeps those holes
/// resident in each thread's arena; jemalloc returns them (see `JEMALLOC_CONF`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Freed pages go back to the system within about a second instead of jemalloc's
/// default ten, so a join storm's transient memory does not stay resident. The
/// `_RJEM_MALLOC_CONF` environment variable still overrides it.
#[unsafe(export_name = "_rjem_malloc_conf")]
static JEMALLOC_CONF: &[u8; 37] = b"dirty_decay_ms:1000,muzzy_decay_ms:0\0";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = feiyan::cli::Cli::parse();
    feiyan::cli::init_logging(cli.log_format);
    feiyan::cli::run(cli).await
}
