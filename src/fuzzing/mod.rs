//! A small mutation fuzzer on stable Rust for the parsers of what peers and files send
//! (`tests/fuzz.rs` runs every target for a fixed number of inputs; `scripts/fuzz.sh
//! SECONDS` runs them for longer with `feiyan-fuzz`).
//!
//! No coverage instrumentation exists on stable Rust, so "new" here does not mean new
//! code reached: each target returns a short text describing what the input came to (the
//! error kind, the shape of what was parsed, sizes in buckets), and an input whose
//! description was never seen before joins the corpus. That steers mutation towards
//! inputs that parse further, much less well than coverage would; long runs and good
//! seeds (`scripts/fuzz-corpus.sh`, [`seeds`]) make up part of it.
//!
//! Each input runs under `catch_unwind` on a worker thread watched by the caller: a panic
//! is a crash, an input that runs longer than [`HANG_LIMIT`] a hang. Both are reported
//! with the input that caused them.

pub mod http;
pub mod seeds;
pub mod switch;
pub mod targets;

use std::cell::RefCell;
use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

pub use targets::{Target, all_targets};

/// An input running longer than this is a hang (a target may set its own).
pub const HANG_LIMIT: Duration = Duration::from_secs(1);
/// The corpus stops growing here (inputs are still mutated from it).
const MAX_CORPUS: usize = 4096;

/// xorshift64*: deterministic for a seed, good enough to pick mutations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator; the same seed gives the same sequence.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

const INTERESTING: [u8; 8] = [0, 0xff, 0x7f, 0x80, 1, 0x20, 0x40, 0xfe];

/// One to four stacked mutations of `input`, another corpus entry `other` for splicing;
/// the result is at most `max_len` bytes.
pub fn mutate(input: &[u8], other: &[u8], rng: &mut Rng, max_len: usize) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        mutate_once(&mut out, other, rng);
    }
    out.truncate(max_len);
    out
}

fn mutate_once(out: &mut Vec<u8>, other: &[u8], rng: &mut Rng) {
    if out.is_empty() {
        out.push(INTERESTING[rng.below(INTERESTING.len())]);
        return;
    }
    let len = out.len();
    // Ranges are short mostly, sometimes long.
    let span = |rng: &mut Rng, len: usize| {
        let most = if rng.below(4) == 0 { len } else { 16.min(len) };
        1 + rng.below(most.max(1))
    };
    match rng.below(11) {
        0 | 1 => {
            let at = rng.below(len);
            out[at] ^= 1 << rng.below(8);
        }
        2 => {
            let at = rng.below(len);
            out[at] = INTERESTING[rng.below(INTERESTING.len())];
        }
        3 => {
            let at = rng.below(len);
            out[at] = rng.next_u64() as u8;
        }
        4 => {
            // Insert random or interesting bytes.
            let at = rng.below(len + 1);
            let n = span(rng, 8);
            let fill: Vec<u8> = (0..n)
                .map(|_| match rng.below(2) {
                    0 => INTERESTING[rng.below(INTERESTING.len())],
                    _ => rng.next_u64() as u8,
                })
                .collect();
            out.splice(at..at, fill);
        }
        5 => {
            let at = rng.below(len);
            let n = span(rng, len - at);
            out.drain(at..at + n);
        }
        6 => {
            // Duplicate a range in place.
            let at = rng.below(len);
            let n = span(rng, len - at);
            let copy = out[at..at + n].to_vec();
            let to = rng.below(len + 1);
            out.splice(to..to, copy);
        }
        7 => {
            // Splice: our head, the other entry's tail.
            if !other.is_empty() {
                let at = rng.below(len + 1);
                let from = rng.below(other.len());
                out.truncate(at);
                out.extend_from_slice(&other[from..]);
            }
        }
        8 => {
            out.truncate(rng.below(len));
        }
        9 => {
            // A length field made a little or a lot bigger or smaller (1, 2 or 4 bytes,
            // big-endian, as every format here writes them).
            let width = [1usize, 2, 4][rng.below(3)];
            if len >= width {
                let at = rng.below(len - width + 1);
                let mut value = out[at..at + width]
                    .iter()
                    .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                value = match rng.below(4) {
                    0 => value.wrapping_add(1 + rng.below(16) as u64),
                    1 => value.wrapping_sub(1 + rng.below(16) as u64),
                    2 => 0,
                    _ => u64::MAX,
                };
                for (i, b) in out[at..at + width].iter_mut().enumerate() {
                    *b = (value >> (8 * (width - 1 - i))) as u8;
                }
            }
        }
        _ => {
            // Overwrite with a run of one interesting byte.
            let at = rng.below(len);
            let n = span(rng, len - at);
            let b = INTERESTING[rng.below(INTERESTING.len())];
            out[at..at + n].fill(b);
        }
    }
}

/// How long to fuzz a target.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// This many mutated inputs (the seeds run first and are not counted).
    Inputs(u64),
    /// Until this much time has passed.
    Time(Duration),
}

/// An input that made a target panic or hang.
#[derive(Debug, Clone)]
pub struct Finding {
    /// The panic message and where it was raised, or "hang".
    pub what: String,
    /// The input.
    pub input: Vec<u8>,
}

/// What one run of one target came to.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The target's name.
    pub target: String,
    /// Mutated inputs run (seeds not counted).
    pub tried: u64,
    /// Seeds the run started from.
    pub seeds: usize,
    /// Inputs that joined the corpus for a new outcome (seeds not counted).
    pub new_entries: usize,
    /// Distinct outcomes seen.
    pub outcomes: usize,
    /// Panics (distinct messages; the first input for each).
    pub crashes: Vec<Finding>,
    /// An input that did not return within the target's hang limit (the run stops there).
    pub hang: Option<Finding>,
    /// How long the run took.
    pub elapsed: Duration,
}

impl Report {
    /// One line: what a long run prints per target.
    pub fn line(&self) -> String {
        format!(
            "{:<8} inputs tried {:>9}  new corpus entries {:>5}  outcomes {:>5}  crashes {}  hangs {}  ({:.1} s, {:.0} inputs/s)",
            self.target,
            self.tried,
            self.new_entries,
            self.outcomes,
            self.crashes.len(),
            usize::from(self.hang.is_some()),
            self.elapsed.as_secs_f64(),
            self.tried as f64 / self.elapsed.as_secs_f64().max(1e-9)
        )
    }
}

thread_local! {
    /// Set on fuzz worker threads: the panic hook records instead of printing.
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
    static QUIET: RefCell<bool> = const { RefCell::new(false) };
}

/// Installs (once) a panic hook that, on fuzz worker threads, records the message and
/// location instead of printing them; other threads print as before.
fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if QUIET.with(|q| *q.borrow()) {
                let message = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string panic".into());
                let at = info
                    .location()
                    .map(|l| format!("{}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{message} at {at}")));
            } else {
                previous(info);
            }
        }));
    });
}

/// Where a run saves what it finds: `dir/TARGET/` gets new corpus entries, `dir/crashes/`
/// the inputs of panics and hangs.
#[derive(Debug, Clone)]
pub struct Save {
    /// The corpus folder.
    pub dir: PathBuf,
}

impl Save {
    fn write(&self, sub: &str, input: &[u8]) {
        let dir = self.dir.join(sub);
        let _ = std::fs::create_dir_all(&dir);
        let name = format!("{:016x}", fnv(input));
        let _ = std::fs::write(dir.join(name), input);
    }
}

fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// Reads every file in `dir` (not recursive) as an input, sorted by name.
pub fn read_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    paths.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// Progress the worker shares with the watcher.
struct Shared {
    /// Inputs started (seeds included), so a stuck one shows.
    started: AtomicU64,
    /// The input running now.
    current: Mutex<Vec<u8>>,
    done: AtomicBool,
    report: Mutex<Report>,
}

/// Fuzzes `target` from `seeds` with `rng_seed` for `budget`, saving findings to `save`.
/// Deterministic for the same target, seeds, seed and input budget. Returns when the budget
/// is spent or an input hangs (the hung worker thread is left behind).
pub fn run(
    mut target: Target,
    seeds: Vec<Vec<u8>>,
    rng_seed: u64,
    budget: Budget,
    save: Option<Save>,
) -> Report {
    install_panic_hook();
    let shared = Arc::new(Shared {
        started: AtomicU64::new(0),
        current: Mutex::new(Vec::new()),
        done: AtomicBool::new(false),
        report: Mutex::new(Report {
            target: target.name.to_string(),
            seeds: seeds.len(),
            ..Report::default()
        }),
    });
    let begun = Instant::now();
    let hang_limit = target.hang_limit;
    let worker = {
        let shared = shared.clone();
        let save = save.clone();
        std::thread::Builder::new()
            .name(format!("fuzz-{}", target.name))
            .spawn(move || {
                QUIET.with(|q| *q.borrow_mut() = true);
                work(
                    &mut target,
                    seeds,
                    rng_seed,
                    budget,
                    &shared,
                    save.as_ref(),
                    begun,
                );
                shared.done.store(true, Ordering::SeqCst);
            })
            .expect("fuzz worker thread")
    };
    // Watch for an input that does not return.
    let mut last = (u64::MAX, Instant::now());
    while !shared.done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
        let started = shared.started.load(Ordering::SeqCst);
        if started != last.0 {
            last = (started, Instant::now());
        } else if last.1.elapsed() > hang_limit && !shared.done.load(Ordering::SeqCst) {
            let input = shared
                .current
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(save) = &save {
                save.write("crashes", &input);
            }
            let mut report = shared
                .report
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            report.hang = Some(Finding {
                what: format!("no answer within {hang_limit:?}"),
                input,
            });
            report.elapsed = begun.elapsed();
            return report;
        }
    }
    let _ = worker.join();
    let mut report = shared
        .report
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    report.elapsed = begun.elapsed();
    report
}

fn work(
    target: &mut Target,
    seeds: Vec<Vec<u8>>,
    rng_seed: u64,
    budget: Budget,
    shared: &Shared,
    save: Option<&Save>,
    begun: Instant,
) {
    let mut rng = Rng::new(rng_seed);
    // FEIYAN_FUZZ_SHOW=1 prints each new outcome (what the targets tell apart).
    let show = std::env::var_os("FEIYAN_FUZZ_SHOW").is_some();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut crash_kinds: HashSet<String> = HashSet::new();
    let mut corpus: Vec<Vec<u8>> = Vec::new();
    let mut run_one = |input: &[u8], is_seed: bool, corpus: &mut Vec<Vec<u8>>| {
        shared.started.fetch_add(1, Ordering::SeqCst);
        {
            let mut current = shared.current.lock().unwrap_or_else(|e| e.into_inner());
            current.clear();
            current.extend_from_slice(input);
        }
        LAST_PANIC.with(|p| *p.borrow_mut() = None);
        let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
        let mut report = shared.report.lock().unwrap_or_else(|e| e.into_inner());
        if !is_seed {
            report.tried += 1;
        }
        match outcome {
            Ok(signature) => {
                if seen.insert(fnv(signature.as_bytes())) {
                    report.outcomes = seen.len();
                    if show {
                        eprintln!("{} new outcome: {signature}", target.name);
                    }
                    if corpus.len() < MAX_CORPUS {
                        corpus.push(input.to_vec());
                    }
                    if !is_seed {
                        report.new_entries += 1;
                        if let Some(save) = save {
                            save.write(target.name, input);
                        }
                    }
                } else if is_seed && corpus.len() < MAX_CORPUS {
                    corpus.push(input.to_vec());
                }
            }
            Err(_) => {
                let what = LAST_PANIC
                    .with(|p| p.borrow_mut().take())
                    .unwrap_or_else(|| "a panic".into());
                if crash_kinds.insert(what.clone()) {
                    if let Some(save) = save {
                        save.write("crashes", input);
                    }
                    report.crashes.push(Finding {
                        what,
                        input: input.to_vec(),
                    });
                }
            }
        }
    };
    for seed in &seeds {
        run_one(&seed[..seed.len().min(target.max_len)], true, &mut corpus);
    }
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let mut tried = 0u64;
    loop {
        match budget {
            Budget::Inputs(n) if tried >= n => break,
            Budget::Time(d) if begun.elapsed() >= d => break,
            _ => {}
        }
        let base = &corpus[rng.below(corpus.len())];
        let other = &corpus[rng.below(corpus.len())];
        let input = mutate(base, other, &mut rng, target.max_len);
        run_one(&input, false, &mut corpus);
        tried += 1;
    }
}
