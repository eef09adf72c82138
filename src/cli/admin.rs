//! `feiyan admin ...`: administrator accounts of the dashboard.

use std::io::{BufRead, Write};

use anyhow::bail;
use clap::Subcommand;

use crate::catalog::{Catalog, Scope};
use crate::ids::{CenterId, StationId};

/// `feiyan admin ...`
#[derive(Subcommand)]
pub enum AdminAction {
    /// Create an account. The password is read from FEIYAN_ADMIN_PASSWORD or, when that
    /// is unset, from the first line of standard input.
    Add {
        /// Login name.
        #[arg(long)]
        username: String,
        /// city, center or station.
        #[arg(long, default_value = "city")]
        role: String,
        /// Center id (role center) or station id (role station).
        #[arg(long)]
        id: Option<i64>,
    },
    /// List accounts.
    List,
}

fn read_password() -> anyhow::Result<String> {
    if let Ok(p) = std::env::var("FEIYAN_ADMIN_PASSWORD") {
        return Ok(p);
    }
    eprint!("password (at least 8 characters): ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub async fn run(catalog: &Catalog, action: AdminAction) -> anyhow::Result<()> {
    match action {
        AdminAction::Add { username, role, id } => {
            let scope = match (role.as_str(), id) {
                ("city", _) => Scope::City,
                ("center", Some(c)) => Scope::Center(CenterId(c)),
                ("station", Some(s)) => Scope::Station(StationId(s)),
                _ => bail!(
                    "--role must be city, center --id <center id> or station --id <station id>"
                ),
            };
            let password = read_password()?;
            let id = catalog.add_account(&username, &password, scope).await?;
            println!("account {id} ({username}, {role}) created; log in at /admin");
        }
        AdminAction::List => {
            for (id, user, scope) in catalog.list_accounts().await? {
                println!("{id:>5}  {user:<20}  {scope}");
            }
        }
    }
    Ok(())
}
