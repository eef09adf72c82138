//! The film library: `film import` (probe files, with a progress bar), `film list` and
//! `film-add` (a title alone, before its file exists). Both ways in go through
//! [`add_to_library`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::{Args, Subcommand};

use crate::audience::now_ms;
use crate::catalog::{Catalog, CatalogError, NewFilm};
use crate::ids::FilmId;
use crate::ingest::playout::{ProbeProgress, probe_film_with_progress};

/// `feiyan film ...`
#[derive(Subcommand)]
pub enum FilmAction {
    /// Probe files and add the playable ones; unplayable ones are reported with the reason
    /// (the others still import). Exits non-zero when any file was rejected.
    Import {
        /// Film files (keep them under media/films/).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// List films.
    List,
}

/// `feiyan film-add TITLE`
#[derive(Args)]
pub struct FilmAdd {
    /// Film title.
    title: String,
}

/// What comes into the film library.
enum LibraryEntry<'a> {
    /// A title alone (`film-add`): a film the statistics can name before it has a file.
    Title(&'a str),
    /// A probed file (`film import`): it fills in the title's entry when one exists.
    File(&'a NewFilm),
}

/// Adds a film to the library and returns its id: the one place the command line writes
/// the films table.
async fn add_to_library(
    catalog: &Catalog,
    entry: LibraryEntry<'_>,
) -> Result<FilmId, CatalogError> {
    match entry {
        LibraryEntry::Title(title) => catalog.add_film(title).await,
        LibraryEntry::File(film) => catalog.import_film(film, now_ms()).await,
    }
}

pub async fn add(catalog: &Catalog, FilmAdd { title }: FilmAdd) -> anyhow::Result<()> {
    let id = add_to_library(catalog, LibraryEntry::Title(&title)).await?;
    println!("film {id}");
    Ok(())
}

pub async fn run(catalog: &Catalog, action: FilmAction) -> anyhow::Result<()> {
    match action {
        FilmAction::Import { paths } => {
            let mut rejected = 0;
            for path in paths {
                let shown = ImportProgress::new(&path);
                match import(catalog, &path, &shown).await? {
                    Ok((id, film)) => {
                        shown.finish("ok");
                        println!(
                            "imported film {id}: {} ({:.1} s, {} / {})",
                            film.title,
                            film.duration_ms as f64 / 1000.0,
                            film.video_codec.as_deref().unwrap_or("no video"),
                            film.audio_codec.as_deref().unwrap_or("no audio")
                        );
                    }
                    Err(reason) => {
                        rejected += 1;
                        shown.finish("rejected");
                        eprintln!("rejected {}: {reason}", path.display());
                    }
                }
            }
            if rejected > 0 {
                anyhow::bail!("{rejected} file(s) could not be imported");
            }
        }
        FilmAction::List => {
            for f in catalog.list_films().await? {
                println!(
                    "{:>4}  {:>8.1} s  {:<6} {:<6} {}",
                    f.id,
                    f.duration_ms as f64 / 1000.0,
                    f.video_codec.as_deref().unwrap_or("-"),
                    f.audio_codec.as_deref().unwrap_or("-"),
                    f.title
                );
            }
        }
    }
    Ok(())
}

/// Probes one file (on a blocking thread, showing progress) and adds it to the library.
/// The inner error rejects this file only (why, for the operator); the outer one ends
/// the command.
async fn import(
    catalog: &Catalog,
    path: &Path,
    shown: &ImportProgress,
) -> anyhow::Result<Result<(FilmId, NewFilm), String>> {
    let probe_path = path.to_path_buf();
    let reporter = shown.clone();
    let probed = tokio::task::spawn_blocking(move || {
        probe_film_with_progress(&probe_path, |p| reporter.update(p))
    })
    .await?;
    Ok(match probed {
        Ok(film) => add_to_library(catalog, LibraryEntry::File(&film))
            .await
            .map(|id| (id, film))
            .map_err(|err| err.to_string()),
        Err(err) => Err(err.to_string()),
    })
}

/// The per-file progress of `film import` on stderr: a bar when stderr is a terminal,
/// otherwise one plain line per quarter of the file, so logs stay readable.
#[derive(Clone)]
struct ImportProgress {
    name: String,
    /// The bar, when stderr is a terminal.
    bar: Option<indicatif::ProgressBar>,
    /// Quarters already reported in plain mode (shared with the probe thread's clone).
    quarters: Arc<AtomicU64>,
}

impl ImportProgress {
    fn new(path: &Path) -> Self {
        use std::io::IsTerminal;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let bar = std::io::stderr().is_terminal().then(|| {
            // Length 1 until the probe knows the duration, so it starts at 0 %, not 100 %.
            let bar = indicatif::ProgressBar::new(1);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix:30!} [{bar:30}] {percent:>3}% {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_prefix(name.clone());
            bar.set_message("scanning");
            bar
        });
        Self {
            name,
            bar,
            quarters: Default::default(),
        }
    }

    fn update(&self, p: ProbeProgress) {
        if let Some(bar) = &self.bar {
            bar.set_length(p.total_ms.max(1));
            bar.set_position(p.done_ms);
        } else if let Some(quarter) = (p.done_ms * 4).checked_div(p.total_ms)
            && self.quarters.fetch_max(quarter, Ordering::Relaxed) < quarter
        {
            eprintln!("{}: scanned {}%", self.name, quarter * 25);
        }
    }

    fn finish(&self, outcome: &'static str) {
        if let Some(bar) = &self.bar {
            if outcome == "ok" {
                bar.finish_with_message(outcome);
            } else {
                bar.abandon_with_message(outcome);
            }
            // The finished bar stays on screen; what follows goes on its own line.
            eprintln!();
        }
    }
}
