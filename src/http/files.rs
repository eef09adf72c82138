//! LOCAL STUB (not committed): replaced by the rec-media branch.
#![allow(missing_docs, unused)]
use std::path::Path;
pub async fn file_response(path: &Path, method_head: bool, range: Option<&str>, content_type: &str, cache_control: &str, download_name: Option<&str>) -> Result<warp::reply::Response, std::io::Error> { todo!() }
