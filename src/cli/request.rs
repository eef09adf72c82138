//! `feiyan request ...`: residents' requests (点单) as administrators handle them: list
//! them with the counts per item and station, turn waiting ones into a planned item on a
//! station (制单/派单), accept or decline an assignment (接单).
//!
//! Scoped like `/api/admin/requests`: `--scope center:ID` sees and schedules only its
//! center's requests, `--scope station:ID|channel` sees those made at or assigned to the
//! station and answers only its assignments; `city` (the default, for the operator on the
//! server's host) everything. Phone numbers are printed masked (`138****5678`): a terminal
//! and its scrollback travel further than the dashboard.

use anyhow::{Context, bail};
use clap::Subcommand;

use crate::audience::now_ms;
use crate::catalog::{Catalog, MenuItem, RequestScope, ServiceRequest};
use crate::ids::{CenterId, StationId};

/// `feiyan request ...`
#[derive(Subcommand)]
pub enum RequestAction {
    /// List the requests in scope (newest first), then the counts per item and station
    /// (most waiting first).
    List {
        /// Act as `city` (default), `center:ID` or `station:ID|channel`.
        #[arg(long, default_value = "city")]
        scope: String,
    },
    /// Turn waiting requests for one menu item into one planned item (a lecture or a film
    /// class) on a station; they become scheduled, waiting for the station to accept.
    Schedule {
        /// Request ids (all for the same menu item).
        #[arg(required = true)]
        ids: Vec<i64>,
        /// Station id or channel the item is assigned to.
        #[arg(long)]
        station: String,
        /// Start time, RFC 3339, e.g. 2026-12-01T19:00:00+08:00.
        #[arg(long)]
        at: String,
        /// Title of a lecture (the menu item's by default).
        #[arg(long)]
        title: Option<String>,
        /// Lecturer (the menu item's by default).
        #[arg(long)]
        speaker: Option<String>,
        /// Act as `city` (default) or `center:ID`; a station cannot schedule.
        #[arg(long, default_value = "city")]
        scope: String,
    },
    /// The assigned station takes a scheduled request.
    Accept {
        /// Request id.
        id: i64,
        /// Act as `city` (default), `center:ID` or `station:ID|channel`.
        #[arg(long, default_value = "city")]
        scope: String,
    },
    /// The assigned station declines a scheduled request, with a reason residents see.
    Decline {
        /// Request id.
        id: i64,
        /// Why (shown to the resident on the station page).
        #[arg(long)]
        reason: String,
        /// Act as `city` (default), `center:ID` or `station:ID|channel`.
        #[arg(long, default_value = "city")]
        scope: String,
    },
}

/// Whom a command acts as: the scopes of the API's accounts.
pub struct Acting(RequestScope);

impl Acting {
    /// `city`, `center:ID` or `station:ID|channel` (the station must exist).
    pub async fn parse(catalog: &Catalog, text: &str) -> anyhow::Result<Acting> {
        let scope = match text.split_once(':') {
            None if text == "city" => RequestScope::City,
            Some(("center", id)) => {
                let id: i64 = id
                    .parse()
                    .with_context(|| format!("--scope {text:?}: center:ID takes a center id"))?;
                RequestScope::Center(CenterId(id))
            }
            Some(("station", station)) => RequestScope::Station(catalog.station_id(station).await?),
            _ => bail!("--scope {text:?}: use city, center:ID or station:ID (or station:CHANNEL)"),
        };
        Ok(Acting(scope))
    }

    fn outside(what: &str) -> anyhow::Error {
        anyhow::anyhow!("{what} is outside the scope of --scope; act as its center or the city")
    }

    /// The acting center: its own, or a station's center; none for the city.
    pub async fn center(&self, catalog: &Catalog) -> anyhow::Result<Option<CenterId>> {
        Ok(match self.0 {
            RequestScope::City => None,
            RequestScope::Center(c) => Some(c),
            RequestScope::Station(s) => Some(catalog.station_placement(s).await?.center_id),
        })
    }

    /// Reading a center's menu: the city, the center, or one of its stations.
    pub async fn allow_center_read(
        &self,
        catalog: &Catalog,
        center: CenterId,
    ) -> anyhow::Result<()> {
        match self.center(catalog).await? {
            None => Ok(()),
            Some(c) if c == center => Ok(()),
            Some(_) => Err(Acting::outside(&format!("the menu of center {center}"))),
        }
    }

    /// Changing a center's menu: the city or the center's administrators.
    pub fn allow_center_write(&self, center: CenterId) -> anyhow::Result<()> {
        match self.0 {
            RequestScope::City => Ok(()),
            RequestScope::Center(c) if c == center => Ok(()),
            _ => Err(Acting::outside(&format!("the menu of center {center}"))),
        }
    }

    /// A station: the city, its center, or the station itself.
    async fn allow_station(&self, catalog: &Catalog, station: StationId) -> anyhow::Result<()> {
        let ok = match self.0 {
            RequestScope::City => true,
            RequestScope::Center(c) => catalog.station_placement(station).await?.center_id == c,
            RequestScope::Station(s) => s == station,
        };
        if ok {
            Ok(())
        } else {
            Err(Acting::outside(&format!("station {station}")))
        }
    }
}

fn parse_at(at: &str) -> anyhow::Result<i64> {
    Ok(chrono::DateTime::parse_from_rfc3339(at)
        .with_context(|| format!("--at {at:?}: expected RFC 3339, e.g. 2026-12-01T19:00:00+08:00"))?
        .timestamp_millis())
}

/// One menu item as a tab-separated line.
pub fn print_menu_item(item: &MenuItem) {
    println!(
        "{}\t{}\t{}\t{}\t{}",
        item.id,
        item.kind.as_str(),
        item.title,
        item.speaker.as_deref().unwrap_or(""),
        item.film_id.map(|f| f.to_string()).unwrap_or_default()
    );
}

/// One request as a tab-separated line; the phone masked.
fn print_request(r: &ServiceRequest) {
    let q = &r.request;
    println!(
        "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
        q.id,
        q.status.as_str(),
        r.station,
        r.assigned_station_id
            .map(|s| s.to_string())
            .unwrap_or_default(),
        q.item.title,
        q.nickname,
        q.period,
        q.phone_masked.as_deref().unwrap_or(""),
        q.planned_item_id.map(|p| p.to_string()).unwrap_or_default(),
        q.decline_reason.as_deref().unwrap_or(""),
        q.created_at
    );
}

pub async fn run(catalog: &Catalog, action: RequestAction) -> anyhow::Result<()> {
    let now = now_ms();
    match action {
        RequestAction::List { scope } => {
            let acting = Acting::parse(catalog, &scope).await?;
            catalog.settle_requests(now).await?;
            let (requests, counts) = catalog.scoped_requests(acting.0).await?;
            println!(
                "id\tstatus\tstation\tassigned_station\titem\tnickname\tperiod\tphone\tplanned_item\tdecline_reason\tcreated_at"
            );
            for r in &requests {
                print_request(r);
            }
            println!();
            println!("menu_id\titem\tstation\twaiting\ttotal");
            for c in &counts {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    c.menu_id, c.title, c.station, c.waiting, c.total
                );
            }
        }
        RequestAction::Schedule {
            ids,
            station,
            at,
            title,
            speaker,
            scope,
        } => {
            let acting = Acting::parse(catalog, &scope).await?;
            if let RequestScope::Station(_) = acting.0 {
                bail!(
                    "city and center administrators assign requests; a station accepts or declines them"
                );
            }
            let at = parse_at(&at)?;
            let station = catalog.station_id(&station).await?;
            acting.allow_station(catalog, station).await?;
            for id in &ids {
                let r = catalog.request(*id).await?;
                acting
                    .allow_station(catalog, StationId(r.station_id))
                    .await
                    .with_context(|| format!("request {id}"))?;
            }
            let planned = catalog
                .schedule_requests(&ids, station, at, title.as_deref(), speaker.as_deref(), now)
                .await?;
            let item = catalog.planned_item(planned, now).await?;
            println!(
                "requests {} scheduled as item {} ({}, {}) at {} on {} ({})",
                ids.iter()
                    .map(|i| i.to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                item.id,
                item.kind.as_str(),
                item.title,
                item.starts_at,
                item.station.channel,
                item.url
            );
        }
        RequestAction::Accept { id, scope } => answer(catalog, id, None, &scope).await?,
        RequestAction::Decline { id, reason, scope } => {
            answer(catalog, id, Some(&reason), &scope).await?
        }
    }
    Ok(())
}

/// Accept (`decline` None) or decline request `id` as the assigned station (or above it).
async fn answer(
    catalog: &Catalog,
    id: i64,
    decline: Option<&str>,
    scope: &str,
) -> anyhow::Result<()> {
    let acting = Acting::parse(catalog, scope).await?;
    let current = catalog.request(id).await?;
    let Some(assigned) = current.assigned_station_id else {
        bail!(
            "request {id} is {}; it has no station to accept it yet",
            current.request.status.as_str()
        );
    };
    acting
        .allow_station(catalog, StationId(assigned))
        .await
        .with_context(|| format!("request {id} is assigned to station {assigned}"))?;
    let r = catalog.answer_request(id, decline, now_ms()).await?;
    println!("request {} is {}", r.request.id, r.request.status.as_str());
    Ok(())
}
