//! The station directory residents search (`/api/directory`, `/stations`): centers with
//! their number of stations, one center's institutes and stations, and a search by part of
//! a station's, institute's or center's name.

use serde::Serialize;

use super::planned::bad;
use super::{Catalog, CatalogError};
use crate::ids::{CenterId, StationId};

/// Institute id and name, then one of its stations (id, name, channel), if any.
type DirectoryRow = (i64, String, Option<i64>, Option<String>, Option<String>);

/// `LIKE` pattern matching `text` anywhere, its `%`, `_` and `\` taken literally.
fn contains_pattern(text: &str) -> String {
    let mut out = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

/// A center with its number of stations (`GET /api/directory`).
#[derive(Debug, Clone, Serialize)]
pub struct DirectoryCenter {
    /// Center id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Stations under it.
    pub stations: i64,
}

/// A station in the directory.
#[derive(Debug, Clone, Serialize)]
pub struct DirectoryStation {
    /// Station id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Its channel.
    pub channel: String,
}

/// An institute with its stations (`GET /api/directory?center=`).
#[derive(Debug, Clone, Serialize)]
pub struct DirectoryInstitute {
    /// Institute id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Its stations.
    pub stations: Vec<DirectoryStation>,
}

/// An id and a name.
#[derive(Debug, Clone, Serialize)]
pub struct IdName {
    /// Row id.
    pub id: i64,
    /// Name.
    pub name: String,
}

/// One center's institutes and stations.
#[derive(Debug, Clone, Serialize)]
pub struct DirectoryCenterDetail {
    /// The center.
    pub center: IdName,
    /// Its institutes, each with its stations.
    pub institutes: Vec<DirectoryInstitute>,
}

/// A search hit (`GET /api/directory?q=`).
#[derive(Debug, Clone, Serialize)]
pub struct StationHit {
    /// Station id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Its channel.
    pub channel: String,
    /// Its institute's name.
    pub institute: String,
    /// Its center's name.
    pub center: String,
}

impl Catalog {
    /// A center's id and name, or `NotFound`.
    pub async fn center(&self, center: CenterId) -> Result<IdName, CatalogError> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT id, name FROM centers WHERE id = $1")
                .bind(center.0)
                .fetch_optional(&self.pool)
                .await?;
        let (id, name) =
            row.ok_or_else(|| CatalogError::NotFound(format!("no center {center}")))?;
        Ok(IdName { id, name })
    }

    /// Every center with its number of stations.
    pub async fn directory_centers(&self) -> Result<Vec<DirectoryCenter>, CatalogError> {
        let rows: Vec<(i64, String, i64)> = sqlx::query_as(
            "SELECT c.id, c.name, COUNT(s.id) FROM centers c \
             LEFT JOIN institutes i ON i.center_id = c.id \
             LEFT JOIN stations s ON s.institute_id = i.id GROUP BY c.id, c.name ORDER BY c.id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, stations)| DirectoryCenter { id, name, stations })
            .collect())
    }

    /// One center's institutes and their stations, or `NotFound`.
    pub async fn directory_center(
        &self,
        center: CenterId,
    ) -> Result<DirectoryCenterDetail, CatalogError> {
        let IdName { id, name } = self.center(center).await?;
        let rows: Vec<DirectoryRow> = sqlx::query_as(
            "SELECT i.id, i.name, s.id, s.name, ch.name FROM institutes i \
                 LEFT JOIN stations s ON s.institute_id = i.id \
                 LEFT JOIN channels ch ON ch.station_id = s.id \
                 WHERE i.center_id = $1 ORDER BY i.id, s.id",
        )
        .bind(center.0)
        .fetch_all(&self.pool)
        .await?;
        let mut institutes: Vec<DirectoryInstitute> = Vec::new();
        for (iid, iname, sid, sname, channel) in rows {
            if institutes.last().is_none_or(|i| i.id != iid) {
                institutes.push(DirectoryInstitute {
                    id: iid,
                    name: iname,
                    stations: Vec::new(),
                });
            }
            if let (Some(sid), Some(sname), Some(last)) = (sid, sname, institutes.last_mut()) {
                last.stations.push(DirectoryStation {
                    id: sid,
                    name: sname,
                    channel: channel.unwrap_or_else(|| {
                        crate::ids::ChannelName::for_station(StationId(sid)).to_string()
                    }),
                });
            }
        }
        Ok(DirectoryCenterDetail {
            center: IdName { id, name },
            institutes,
        })
    }

    /// Stations whose name (or institute's, or center's name) contains `text`, at most
    /// `limit`, by id.
    pub async fn search_stations(
        &self,
        text: &str,
        limit: i64,
    ) -> Result<Vec<StationHit>, CatalogError> {
        let text = text.trim();
        if text.is_empty() || text.chars().count() > 100 {
            return Err(bad("q", "give 1 to 100 characters of a station's name"));
        }
        let rows: Vec<(i64, String, String, String, String)> = sqlx::query_as(
            "SELECT s.id, s.name, ch.name, i.name, c.name FROM stations s \
             JOIN institutes i ON i.id = s.institute_id JOIN centers c ON c.id = i.center_id \
             JOIN channels ch ON ch.station_id = s.id \
             WHERE s.name LIKE $1 ESCAPE '\\' OR ch.name = $2 \
             OR s.institute_id IN (SELECT id FROM institutes WHERE name LIKE $1 ESCAPE '\\' \
             OR center_id IN (SELECT id FROM centers WHERE name LIKE $1 ESCAPE '\\')) \
             ORDER BY s.id LIMIT $3",
        )
        .bind(contains_pattern(text))
        .bind(text)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, channel, institute, center)| StationHit {
                id,
                name,
                channel,
                institute,
                center,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_patterns_take_wildcards_literally() {
        assert_eq!(contains_pattern("a%b_c\\"), "%a\\%b\\_c\\\\%");
        assert_eq!(contains_pattern("社区"), "%社区%");
    }
}
