//! The hierarchy an administrator manages: centers (中心) -> institutes (所) -> stations (站),
//! one at a time or a whole city from CSV in one transaction.

use serde::Serialize;
use sqlx::{Any, Transaction};

use super::{Catalog, CatalogError, check_name, hash_key, new_stream_key};
use crate::audience::now_ms;
use crate::ids::{CenterId, ChannelName, InstituteId, StationId};

/// A station created by [`Catalog::create_station`] or an import: the clear key is only here.
#[derive(Debug, Clone, Serialize)]
pub struct CreatedStation {
    /// Row id.
    pub station_id: StationId,
    /// Center name, so an import's key list can be handed to the right people.
    pub center: String,
    /// Institute name, for the same reason.
    pub institute: String,
    /// Station name.
    pub station: String,
    /// The station's channel.
    pub channel: ChannelName,
    /// The clear stream key, shown once.
    pub stream_key: String,
}

/// What a CSV import did.
#[derive(Debug, Clone, Serialize)]
pub struct ImportReport {
    /// Centers that did not exist before.
    pub centers_created: usize,
    /// Institutes that did not exist before.
    pub institutes_created: usize,
    /// Every station created, with its one-time stream key.
    pub stations: Vec<CreatedStation>,
}

/// Where a station sits, for scope checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// The station's center.
    pub center_id: CenterId,
    /// The station's institute.
    pub institute_id: InstituteId,
}

/// One node of the tree the dashboard drills down through.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    /// Row id.
    pub id: i64,
    /// Display name.
    pub name: String,
    /// Stations carry their address; empty for centers and institutes.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// Institutes of a center, stations of an institute; empty for stations.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Node>,
}

/// Appends one CSV record (RFC 4180 quoting, CRLF) for spreadsheet programs. A cell that
/// starts with `=`, `+`, `-`, `@`, a tab or a CR is prefixed with `'`, so Excel and WPS
/// show it as text instead of running it as a formula (names and titles come from
/// operators and imports; a CSV export must not carry `=HYPERLINK(...)` to an admin).
pub fn write_csv_record<S: AsRef<str>>(out: &mut String, cells: &[S]) {
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let cell = cell.as_ref();
        let formula = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
        let quoted = cell.contains([',', '"', '\n', '\r']);
        if quoted {
            out.push('"');
        }
        if formula {
            out.push('\'');
        }
        out.push_str(&cell.replace('"', "\"\""));
        if quoted {
            out.push('"');
        }
    }
    out.push_str("\r\n");
}

/// Splits CSV text (RFC 4180: quoted fields, doubled quotes, CRLF) into records, each with
/// the 1-based line number it starts on so errors can point at it.
pub fn parse_csv(text: &str) -> Result<Vec<(usize, Vec<String>)>, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut records = Vec::new();
    let mut field = String::new();
    let mut record: Vec<String> = Vec::new();
    let mut line = 1usize;
    let mut record_line = 1usize;
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        if quoted {
            match ch {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push('\n');
                }
                _ => field.push(ch),
            }
            continue;
        }
        match ch {
            '"' if field.is_empty() => quoted = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' => {}
            '\n' => {
                record.push(std::mem::take(&mut field));
                if !(record.len() == 1 && record[0].trim().is_empty()) {
                    records.push((record_line, std::mem::take(&mut record)));
                }
                record.clear();
                line += 1;
                record_line = line;
            }
            _ => field.push(ch),
        }
    }
    if quoted {
        return Err(format!(
            "row {record_line}: a quoted field is not closed (missing \")"
        ));
    }
    record.push(field);
    if !(record.len() == 1 && record[0].trim().is_empty()) {
        records.push((record_line, record));
    }
    Ok(records)
}

fn is_header(fields: &[String]) -> bool {
    let first = fields.first().map(|f| f.trim().to_lowercase());
    matches!(first.as_deref(), Some("center") | Some("中心"))
}

async fn ensure_center(
    tx: &mut Transaction<'_, Any>,
    name: &str,
) -> Result<(CenterId, bool), CatalogError> {
    let done = sqlx::query("INSERT INTO centers (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(name)
        .execute(&mut **tx)
        .await?;
    let (id,): (i64,) = sqlx::query_as("SELECT id FROM centers WHERE name = $1")
        .bind(name)
        .fetch_one(&mut **tx)
        .await?;
    Ok((CenterId(id), done.rows_affected() > 0))
}

async fn ensure_institute(
    tx: &mut Transaction<'_, Any>,
    center_id: CenterId,
    name: &str,
) -> Result<(InstituteId, bool), CatalogError> {
    let done = sqlx::query(
        "INSERT INTO institutes (center_id, name) VALUES ($1, $2) \
         ON CONFLICT (center_id, name) DO NOTHING",
    )
    .bind(center_id.0)
    .bind(name)
    .execute(&mut **tx)
    .await?;
    let (id,): (i64,) =
        sqlx::query_as("SELECT id FROM institutes WHERE center_id = $1 AND name = $2")
            .bind(center_id.0)
            .bind(name)
            .fetch_one(&mut **tx)
            .await?;
    Ok((InstituteId(id), done.rows_affected() > 0))
}

/// Inserts a station and its channel; `None` when the institute already has that name.
async fn insert_station(
    tx: &mut Transaction<'_, Any>,
    institute_id: InstituteId,
    name: &str,
    address: &str,
) -> Result<Option<(StationId, ChannelName, String)>, CatalogError> {
    let existing: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM stations WHERE institute_id = $1 AND name = $2")
            .bind(institute_id.0)
            .bind(name)
            .fetch_optional(&mut **tx)
            .await?;
    if existing.is_some() {
        return Ok(None);
    }
    let key = new_stream_key();
    let (id,): (i64,) = sqlx::query_as(
        "INSERT INTO stations (institute_id, name, address, stream_key_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5) RETURNING id",
    )
    .bind(institute_id.0)
    .bind(name)
    .bind(address)
    .bind(hash_key(&key))
    .bind(now_ms())
    .fetch_one(&mut **tx)
    .await?;
    let station = StationId(id);
    let channel = ChannelName::for_station(station);
    sqlx::query("INSERT INTO channels (name, station_id) VALUES ($1, $2)")
        .bind(channel.as_str())
        .bind(station.0)
        .execute(&mut **tx)
        .await?;
    Ok(Some((station, channel, key)))
}

impl Catalog {
    /// Creates a center; its id. Creating one that exists is an error so typos show up.
    pub async fn create_center(&self, name: &str) -> Result<CenterId, CatalogError> {
        let name = check_name("center", name)?;
        let mut tx = self.pool.begin().await?;
        let (id, created) = ensure_center(&mut tx, &name).await?;
        if !created {
            return Err(CatalogError::Invalid {
                field: "center",
                reason: format!("center {name:?} already exists (id {id})"),
            });
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Creates an institute under an existing center; its id.
    pub async fn create_institute(
        &self,
        center_id: CenterId,
        name: &str,
    ) -> Result<InstituteId, CatalogError> {
        let name = check_name("institute", name)?;
        let mut tx = self.pool.begin().await?;
        let known: Option<(i64,)> = sqlx::query_as("SELECT id FROM centers WHERE id = $1")
            .bind(center_id.0)
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Err(CatalogError::Invalid {
                field: "center_id",
                reason: format!("no center {center_id}"),
            });
        }
        let (id, created) = ensure_institute(&mut tx, center_id, &name).await?;
        if !created {
            return Err(CatalogError::Invalid {
                field: "institute",
                reason: format!(
                    "institute {name:?} already exists in center {center_id} (id {id})"
                ),
            });
        }
        tx.commit().await?;
        Ok(id)
    }

    /// Creates a station under an existing institute, with its channel and stream key.
    pub async fn create_station(
        &self,
        institute_id: InstituteId,
        name: &str,
        address: &str,
    ) -> Result<CreatedStation, CatalogError> {
        let name = check_name("station", name)?;
        let address = address.trim();
        if address.chars().count() > 500 {
            return Err(CatalogError::Invalid {
                field: "address",
                reason: "must be at most 500 characters".into(),
            });
        }
        let mut tx = self.pool.begin().await?;
        let parent: Option<(String, String)> = sqlx::query_as(
            "SELECT c.name, i.name FROM institutes i JOIN centers c ON c.id = i.center_id \
             WHERE i.id = $1",
        )
        .bind(institute_id.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((center, institute)) = parent else {
            return Err(CatalogError::Invalid {
                field: "institute_id",
                reason: format!("no institute {institute_id}"),
            });
        };
        let Some((station_id, channel, stream_key)) =
            insert_station(&mut tx, institute_id, &name, address).await?
        else {
            return Err(CatalogError::Invalid {
                field: "station",
                reason: format!("station {name:?} already exists in {center}/{institute}"),
            });
        };
        tx.commit().await?;
        Ok(CreatedStation {
            station_id,
            center,
            institute,
            station: name,
            channel,
            stream_key,
        })
    }

    /// Imports a city from CSV rows `center,institute,station,address` (a header row
    /// starting with `center` or `中心` is skipped). Either every row is valid and
    /// everything is created in one transaction, or nothing is created and the error
    /// lists every bad row by its line number.
    pub async fn import_csv(&self, text: &str) -> Result<ImportReport, CatalogError> {
        let bad = |reason: String| CatalogError::Invalid {
            field: "csv",
            reason,
        };
        let records = parse_csv(text).map_err(bad)?;
        let mut rows = Vec::new();
        let mut errors = Vec::new();
        let mut seen = std::collections::HashMap::new();
        for (index, (line, fields)) in records.into_iter().enumerate() {
            if index == 0 && is_header(&fields) {
                continue;
            }
            if fields.len() != 4 {
                errors.push(format!(
                    "row {line}: expected 4 fields (center,institute,station,address), found {}",
                    fields.len()
                ));
                continue;
            }
            let mut row_errors = Vec::new();
            let mut names = Vec::new();
            for (field, value) in ["center", "institute", "station"].iter().zip(&fields) {
                match check_name(field, value) {
                    Ok(v) => names.push(v),
                    Err(_) => row_errors.push(format!("{field} must be 1 to 200 characters")),
                }
            }
            let address = fields[3].trim().to_string();
            if address.chars().count() > 500 {
                row_errors.push("address must be at most 500 characters".into());
            }
            if row_errors.is_empty() {
                let key = (names[0].clone(), names[1].clone(), names[2].clone());
                if let Some(first) = seen.insert(key, line) {
                    row_errors.push(format!("duplicate of row {first}"));
                }
            }
            if row_errors.is_empty() {
                rows.push((line, names, address));
            } else {
                errors.push(format!("row {line}: {}", row_errors.join("; ")));
            }
        }
        if rows.is_empty() && errors.is_empty() {
            return Err(bad("the file has no rows".into()));
        }
        let mut tx = self.pool.begin().await?;
        let mut report = ImportReport {
            centers_created: 0,
            institutes_created: 0,
            stations: Vec::new(),
        };
        if errors.is_empty() {
            for (line, names, address) in rows {
                let (center_id, new_center) = ensure_center(&mut tx, &names[0]).await?;
                let (institute_id, new_institute) =
                    ensure_institute(&mut tx, center_id, &names[1]).await?;
                report.centers_created += usize::from(new_center);
                report.institutes_created += usize::from(new_institute);
                match insert_station(&mut tx, institute_id, &names[2], &address).await? {
                    Some((station_id, channel, stream_key)) => {
                        report.stations.push(CreatedStation {
                            station_id,
                            center: names[0].clone(),
                            institute: names[1].clone(),
                            station: names[2].clone(),
                            channel,
                            stream_key,
                        })
                    }
                    None => errors.push(format!("row {line}: station already exists")),
                }
            }
        }
        if !errors.is_empty() {
            tx.rollback().await?;
            return Err(bad(format!(
                "nothing was imported; fix these rows: {}",
                errors.join(" | ")
            )));
        }
        tx.commit().await?;
        Ok(report)
    }

    /// Center and institute of a station, or `UnknownStation`.
    pub async fn station_placement(&self, station: StationId) -> Result<Placement, CatalogError> {
        let row: Option<(i64, i64)> = sqlx::query_as(
            "SELECT i.center_id, i.id FROM stations s JOIN institutes i ON i.id = s.institute_id \
             WHERE s.id = $1",
        )
        .bind(station.0)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|(center_id, institute_id)| Placement {
            center_id: CenterId(center_id),
            institute_id: InstituteId(institute_id),
        })
        .ok_or_else(|| CatalogError::UnknownStation(station.to_string()))
    }

    /// The center of an institute, or `None` when there is no such institute.
    pub async fn institute_center(
        &self,
        institute: InstituteId,
    ) -> Result<Option<CenterId>, CatalogError> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT center_id FROM institutes WHERE id = $1")
            .bind(institute.0)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(c,)| CenterId(c)))
    }

    /// The tree of centers, institutes and stations, optionally limited to one center or
    /// one station (what an account may see).
    pub async fn hierarchy(
        &self,
        center: Option<CenterId>,
        station: Option<StationId>,
    ) -> Result<Vec<Node>, CatalogError> {
        let rows: Vec<(i64, String, i64, String, i64, String, String)> = sqlx::query_as(
            "SELECT c.id, c.name, i.id, i.name, s.id, s.name, s.address FROM centers c \
             JOIN institutes i ON i.center_id = c.id JOIN stations s ON s.institute_id = i.id \
             WHERE ($1 < 0 OR c.id = $1) AND ($2 < 0 OR s.id = $2) ORDER BY c.id, i.id, s.id",
        )
        .bind(center.map_or(-1, |c| c.0))
        .bind(station.map_or(-1, |s| s.0))
        .fetch_all(&self.pool)
        .await?;
        let mut tree: Vec<Node> = Vec::new();
        for (cid, cname, iid, iname, sid, sname, address) in rows {
            if tree.last().is_none_or(|c| c.id != cid) {
                tree.push(Node {
                    id: cid,
                    name: cname,
                    address: String::new(),
                    children: Vec::new(),
                });
            }
            let Some(center) = tree.last_mut() else {
                continue;
            };
            if center.children.last().is_none_or(|i| i.id != iid) {
                center.children.push(Node {
                    id: iid,
                    name: iname,
                    address: String::new(),
                    children: Vec::new(),
                });
            }
            if let Some(institute) = center.children.last_mut() {
                institute.children.push(Node {
                    id: sid,
                    name: sname,
                    address,
                    children: Vec::new(),
                });
            }
        }
        Ok(tree)
    }
}

#[cfg(test)]
mod tests {
    use super::{parse_csv, write_csv_record};

    #[test]
    fn csv_records_quote_and_neutralise_formulas() {
        let mut out = String::new();
        write_csv_record(
            &mut out,
            &["=1+2", "+x", "-y", "@z", "\tt", "\rr", "a,b", "ok", "5"],
        );
        assert_eq!(out, "'=1+2,'+x,'-y,'@z,'\tt,\"'\rr\",\"a,b\",ok,5\r\n");
        let back = parse_csv(&out).unwrap();
        assert_eq!(back[0].1[0], "'=1+2");
    }

    #[test]
    fn csv_quotes_crlf_and_bom() {
        let text = "\u{feff}center,institute,station,address\r\n\"A, 1\",B,\"C \"\"x\"\"\",D\r\n\r\nE,F,G,\n";
        let rows = parse_csv(text).unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].0, 2);
        assert_eq!(rows[1].1, vec!["A, 1", "B", "C \"x\"", "D"]);
        assert_eq!(rows[2].0, 4);
        assert_eq!(rows[2].1, vec!["E", "F", "G", ""]);
        assert!(parse_csv("a,\"b\n").is_err());
    }
}
