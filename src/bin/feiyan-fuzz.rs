//! Long fuzz runs and seed making (`scripts/fuzz.sh`, `scripts/fuzz-corpus.sh`); the
//! short deterministic runs are `tests/fuzz.rs`. See `feiyan::fuzzing` for what a target
//! and a "new corpus entry" are.
//!
//! ```text
//! feiyan-fuzz run SECONDS [--corpus DIR] [--seeds DIR] [--target NAME]... [--rng SEED]
//! feiyan-fuzz seeds DIR --flv FILE
//! feiyan-fuzz decode FILE
//! ```
//! `run` splits SECONDS evenly over the targets (all of them, the HTTP paths against a
//! server it starts on loopback, unless `--target` names some), seeds each from the
//! committed corpus (`--seeds`, default `tests/fuzz-corpus`) and the run corpus
//! (`--corpus`, default `target/fuzz-corpus`), saves new entries and crash inputs there,
//! prints one line per target and exits 1 when anything panicked or hung.
//! `seeds` writes the seeds made in code. `decode` runs a media file through the server's
//! demux and transcode stage (decode, scale to 360p, libx264), as `scripts/fuzz.sh` does
//! under valgrind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use feiyan::fuzzing::{self, Budget, Save, Target, seeds};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("run") => run(&args[1..]),
        Some("seeds") => make_seeds(&args[1..]),
        Some("decode") => decode(args.get(1).context("decode FILE")?),
        _ => bail!(
            "usage: feiyan-fuzz run SECONDS [--corpus DIR] [--seeds DIR] [--target NAME]... [--rng SEED]\n       feiyan-fuzz seeds DIR --flv FILE\n       feiyan-fuzz decode FILE"
        ),
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].as_str())
        .collect()
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let seconds: f64 = args
        .first()
        .context("run SECONDS")?
        .parse()
        .context("SECONDS is a number")?;
    let corpus = PathBuf::from(
        flag(args, "--corpus")
            .first()
            .copied()
            .unwrap_or("target/fuzz-corpus"),
    );
    let committed = PathBuf::from(
        flag(args, "--seeds")
            .first()
            .copied()
            .unwrap_or("tests/fuzz-corpus"),
    );
    let rng: u64 = match flag(args, "--rng").first() {
        Some(s) => s.parse().context("--rng is a number")?,
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos() as u64,
    };
    let wanted = flag(args, "--target");
    let runtime = tokio::runtime::Runtime::new()?;
    let server = if wanted.is_empty() || wanted.contains(&"paths") {
        Some(runtime.block_on(start_server())?)
    } else {
        None
    };
    let mut targets: Vec<Target> = fuzzing::all_targets();
    if let Some((server, _)) = &server {
        targets.push(fuzzing::http::paths(server.http_addr));
    }
    targets.retain(|t| wanted.is_empty() || wanted.contains(&t.name));
    if targets.is_empty() {
        bail!("no such target; targets: flv rtmp stun rtcp sdp h264 copy csv range paths");
    }
    let each = Duration::from_secs_f64(seconds / targets.len() as f64);
    println!(
        "fuzzing {} targets for {:.0} s each (rng seed {rng}; corpus {})",
        targets.len(),
        each.as_secs_f64(),
        corpus.display()
    );
    let mut failed = false;
    for target in targets {
        let name = target.name;
        let mut inputs = fuzzing::read_corpus(&committed.join(name));
        inputs.extend(fuzzing::read_corpus(&corpus.join(name)));
        let report = fuzzing::run(
            target,
            inputs,
            rng,
            Budget::Time(each),
            Some(Save {
                dir: corpus.clone(),
            }),
        );
        println!("{}", report.line());
        for crash in &report.crashes {
            failed = true;
            println!(
                "  CRASH {}: {} bytes, {}",
                name,
                crash.input.len(),
                crash.what
            );
        }
        if let Some(hang) = &report.hang {
            failed = true;
            println!("  HANG {}: {} bytes, {}", name, hang.input.len(), hang.what);
            // The hung worker cannot be stopped; the other targets still get their turn.
        }
    }
    if let Some((server, _dir)) = server {
        runtime.block_on(server.shutdown());
    }
    if failed {
        println!(
            "crash and hang inputs are in {}",
            corpus.join("crashes").display()
        );
        std::process::exit(1);
    }
    Ok(())
}

/// The real server on loopback ports with a fresh SQLite catalog, as the tests start it.
async fn start_server() -> anyhow::Result<(feiyan::app::RunningServer, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    let mut config = feiyan::config::Config::default();
    config.http.listen = "127.0.0.1:0".parse()?;
    config.webrtc.udp_bind = "127.0.0.1:0".parse()?;
    config.webrtc.advertised_ips = vec!["127.0.0.1".parse()?];
    config.ingest.rtmp_listen = None;
    config.catalog.database_url = format!("sqlite://{}/feiyan.db", dir.path().display());
    config.recording.dir = dir.path().join("recordings");
    config.validate()?;
    let server = feiyan::app::start(config).await?;
    Ok((server, dir))
}

fn make_seeds(args: &[String]) -> anyhow::Result<()> {
    let dir = PathBuf::from(args.first().context("seeds DIR")?);
    let flv_path = flag(args, "--flv")
        .first()
        .copied()
        .context("--flv FILE (an FLV made by the ffmpeg CLI)")?;
    let flv = std::fs::read(flv_path).with_context(|| format!("reading {flv_path}"))?;
    let write = |target: &str, inputs: Vec<Vec<u8>>| -> anyhow::Result<()> {
        let sub = dir.join(target);
        std::fs::create_dir_all(&sub)?;
        for (i, input) in inputs.iter().enumerate() {
            std::fs::write(sub.join(format!("gen-{i:02}")), input)?;
        }
        println!("{}: {} seeds", sub.display(), inputs.len());
        Ok(())
    };
    write("stun", seeds::stun())?;
    write("rtcp", seeds::rtcp())?;
    let offers = tokio::runtime::Runtime::new()?.block_on(seeds::sdp());
    write("sdp", offers)?;
    write("csv", seeds::csv())?;
    write("range", seeds::range())?;
    write("paths", seeds::paths())?;
    write("rtmp", vec![seeds::rtmp_publish(&flv, 48 * 1024)])?;
    // Chunks of the FLV cut at tag boundaries: its start (header, metadata, sequence
    // headers, first pictures) and two runs of tags from the middle.
    let starts: Vec<usize> = fuzzing::targets::flv_tags(&flv)
        .iter()
        .map(|(_, _, body)| body.as_ptr() as usize - flv.as_ptr() as usize - 11)
        .collect();
    let n = starts.len();
    if n >= 12 {
        let cut = |from: usize, to: usize| flv[starts[from]..starts[to]].to_vec();
        write(
            "flv",
            vec![cut(0, 6), cut(n / 3, n / 3 + 6), cut(2 * n / 3, n - 1)],
        )?;
    }
    Ok(())
}

/// A media file through the server's demux and transcode stage, as a pull source or a
/// film runs it.
fn decode(path: &str) -> anyhow::Result<()> {
    if !Path::new(path).exists() {
        bail!("{path} does not exist");
    }
    let (packets, pictures) = fuzzing::switch::transcode_file(path)?;
    println!("{path}: {packets} packets in, {pictures} pictures out");
    if pictures < packets {
        bail!("{} pictures were lost", packets - pictures);
    }
    Ok(())
}
