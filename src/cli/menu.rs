//! `feiyan menu ...`: a center's service menu (服务菜单) for the request cycle: the lecture
//! topics (with their speakers) and library films its stations offer residents. Scoped
//! like `/api/admin/menu`: `--scope center:ID` keeps only that center's menu; the city
//! scope (the default, for the operator on the server's host) keeps every center's.

use anyhow::{Context, bail};
use clap::Subcommand;

use super::request::{Acting, print_menu_item};
use crate::audience::now_ms;
use crate::catalog::{Catalog, ItemKind, NewMenuItem};
use crate::ids::CenterId;

/// `feiyan menu ...`
#[derive(Subcommand)]
pub enum MenuAction {
    /// List a center's menu (retired items left out).
    List {
        /// Center id; a center-scoped operator's own by default.
        #[arg(long)]
        center: Option<i64>,
        /// Act as `city` (default), `center:ID` or `station:ID|channel`, as an account of
        /// that scope would over the API.
        #[arg(long, default_value = "city")]
        scope: String,
    },
    /// Add a lecture topic or a library film to a center's menu.
    Add {
        /// Center id; a center-scoped operator's own by default.
        #[arg(long)]
        center: Option<i64>,
        /// lecture or film_class.
        #[arg(long, default_value = "lecture")]
        kind: String,
        /// Lecture topic; for a film class the film's title by default.
        #[arg(long, default_value = "")]
        title: String,
        /// Lecturer.
        #[arg(long, default_value = "")]
        speaker: String,
        /// Film id of a film class (see `feiyan film list`).
        #[arg(long)]
        film: Option<i64>,
        /// Act as `city` (default) or `center:ID`.
        #[arg(long, default_value = "city")]
        scope: String,
    },
    /// Take an item off its center's menu (requests naming it keep it).
    Remove {
        /// Menu item id.
        id: i64,
        /// Act as `city` (default) or `center:ID`.
        #[arg(long, default_value = "city")]
        scope: String,
    },
}

/// The center a menu command works on: `--center`, else the acting center's (or the
/// station's center, for listing).
async fn center_of(
    catalog: &Catalog,
    acting: &Acting,
    center: Option<i64>,
) -> anyhow::Result<CenterId> {
    match (center, acting.center(catalog).await?) {
        (Some(c), _) => Ok(CenterId(c)),
        (None, Some(c)) => Ok(c),
        (None, None) => bail!("name the center: --center ID (see `feiyan station list`)"),
    }
}

pub async fn run(catalog: &Catalog, action: MenuAction) -> anyhow::Result<()> {
    match action {
        MenuAction::List { center, scope } => {
            let acting = Acting::parse(catalog, &scope).await?;
            let center = center_of(catalog, &acting, center).await?;
            acting.allow_center_read(catalog, center).await?;
            println!("id\tkind\ttitle\tspeaker\tfilm");
            for item in catalog.service_menu(center).await? {
                print_menu_item(&item);
            }
        }
        MenuAction::Add {
            center,
            kind,
            title,
            speaker,
            film,
            scope,
        } => {
            let acting = Acting::parse(catalog, &scope).await?;
            let center = center_of(catalog, &acting, center).await?;
            acting.allow_center_write(center)?;
            let kind = ItemKind::parse(&kind)
                .with_context(|| format!("--kind {kind:?}: use lecture or film_class"))?;
            let item = catalog
                .add_menu_item(
                    &NewMenuItem {
                        center_id: center,
                        kind,
                        title,
                        speaker,
                        film_id: film,
                    },
                    now_ms(),
                )
                .await?;
            println!(
                "menu item {} added to center {}: {}",
                item.id, item.center_id, item.title
            );
        }
        MenuAction::Remove { id, scope } => {
            let acting = Acting::parse(catalog, &scope).await?;
            let item = catalog.menu_item(id).await?;
            acting.allow_center_write(CenterId(item.center_id))?;
            let item = catalog.retire_menu_item(id).await?;
            println!(
                "menu item {} ({}) taken off center {}'s menu",
                item.id, item.title, item.center_id
            );
        }
    }
    Ok(())
}
