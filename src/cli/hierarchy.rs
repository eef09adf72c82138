//! The city's hierarchy, centers (中心) over institutes (所) over stations (站):
//! `center-add`, `institute-add`, `import` (a whole city from CSV) and `station ...`.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::catalog::{Catalog, write_csv_record};
use crate::ids::CenterId;

/// `feiyan center-add --name NAME`
#[derive(Args)]
pub struct CenterAdd {
    /// Center name.
    #[arg(long)]
    name: String,
}

/// `feiyan institute-add --center-id ID --name NAME`
#[derive(Args)]
pub struct InstituteAdd {
    /// The parent center's id.
    #[arg(long)]
    center_id: i64,
    /// Institute name.
    #[arg(long)]
    name: String,
}

/// `feiyan import FILE`
#[derive(Args)]
pub struct ImportCsv {
    /// The CSV file (UTF-8, a BOM is fine).
    file: PathBuf,
}

/// `feiyan station ...`
#[derive(Subcommand)]
pub enum StationAction {
    /// Create a station (and its center and institute when missing); prints its channel
    /// and stream key. The key is shown only this once.
    Add {
        /// Center (中心) name.
        #[arg(long)]
        center: String,
        /// Institute (所) name.
        #[arg(long)]
        institute: String,
        /// Station (站) name.
        #[arg(long)]
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List stations and their channels.
    List,
    /// Issue a new stream key for a station (by id or channel); the old key stops working.
    RotateKey {
        /// Station id or channel name.
        station: String,
    },
}

pub async fn center_add(catalog: &Catalog, CenterAdd { name }: CenterAdd) -> anyhow::Result<()> {
    println!("center {}", catalog.create_center(&name).await?);
    Ok(())
}

pub async fn institute_add(catalog: &Catalog, args: InstituteAdd) -> anyhow::Result<()> {
    let id = catalog
        .create_institute(CenterId(args.center_id), &args.name)
        .await?;
    println!("institute {id}");
    Ok(())
}

pub async fn import_csv(catalog: &Catalog, ImportCsv { file }: ImportCsv) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("reading {} (it must be UTF-8)", file.display()))?;
    let report = catalog.import_csv(&text).await?;
    eprintln!(
        "imported {} stations ({} new centers, {} new institutes); keys follow, shown only now",
        report.stations.len(),
        report.centers_created,
        report.institutes_created
    );
    let mut out = String::new();
    write_csv_record(
        &mut out,
        &[
            "center",
            "institute",
            "station",
            "station_id",
            "channel",
            "stream_key",
        ],
    );
    for s in report.stations {
        write_csv_record(
            &mut out,
            &[
                s.center,
                s.institute,
                s.station,
                s.station_id.to_string(),
                s.channel.to_string(),
                s.stream_key,
            ],
        );
    }
    print!("{out}");
    Ok(())
}

pub async fn station(catalog: &Catalog, action: StationAction) -> anyhow::Result<()> {
    match action {
        StationAction::Add {
            center,
            institute,
            name,
            json,
        } => {
            let station = catalog.add_station(&center, &institute, &name).await?;
            if json {
                println!("{}", serde_json::to_string(&station)?);
            } else {
                println!(
                    "station:    {} ({center} / {institute} / {name})",
                    station.station_id
                );
                println!("channel:    {}", station.channel);
                println!("stream key: {}", station.stream_key);
                println!(
                    "(the stream key is shown only now; `feiyan station rotate-key {}` issues a new one)",
                    station.channel
                );
            }
        }
        StationAction::List => {
            println!(
                "{:>6}  {:<12}  center / institute / station",
                "id", "channel"
            );
            for s in catalog.list_stations().await? {
                println!(
                    "{:>6}  {:<12}  {} / {} / {}",
                    s.id, s.channel, s.center, s.institute, s.name
                );
            }
        }
        StationAction::RotateKey { station } => {
            let key = catalog.rotate_key(&station).await?;
            println!("new stream key: {key}");
        }
    }
    Ok(())
}
