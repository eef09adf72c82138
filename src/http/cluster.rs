//! Cluster routes (see [`crate::cluster`] and docs/cluster.md):
//!
//! | route | what |
//! |---|---|
//! | `GET /api/cluster` | city administrators: the nodes, their load, the channels each carries and is origin of |
//! | `POST /whep/{channel}?edge={node}` | another node's signed pull ([`edge_pull`], reached from the WHEP route) |
//!
//! and the `307` a full node answers a WHEP `POST` with ([`redirect`]).

use bytes::Bytes;
use warp::filters::BoxedFilter;
use warp::http::{HeaderValue, StatusCode};
use warp::reply::Response;
use warp::{Filter, Reply};

use super::admin::{authenticate, require_city};
use super::error::{ApiError, text};
use super::{State, check_sdp_body, created, finish, parse_channel, with_state};
use crate::relay::ViewerInfo;

/// `GET /api/cluster`.
pub(super) fn routes(state: State) -> BoxedFilter<(Response,)> {
    let auth = warp::header::optional::<String>("authorization");
    warp::get()
        .and(warp::path!("api" / "cluster"))
        .and(auth)
        .and(with_state(state))
        .then(|h: Option<String>, state: State| async move {
            finish(
                async {
                    let a = authenticate(&state, &h).await?;
                    require_city(&a)?;
                    let nodes = state.catalog.cluster_nodes().await?;
                    Ok(warp::reply::json(&serde_json::json!({
                        "member": state.cluster.is_some(),
                        "this_node": state.catalog.this_node(),
                        "nodes": nodes,
                    }))
                    .into_response())
                }
                .await,
            )
        })
        .boxed()
}

/// A `307 Temporary Redirect` to `location` (WHIP/WHEP clients repeat the POST there).
pub(super) fn redirect(location: &str) -> Response {
    let mut r = text(
        StatusCode::TEMPORARY_REDIRECT,
        format!("this node is full; watch on {location}\n"),
    );
    if let Ok(v) = HeaderValue::from_str(location) {
        r.headers_mut().insert("location", v);
    }
    r
}

pub(super) fn cluster_error(e: crate::cluster::ClusterError) -> ApiError {
    match e {
        crate::cluster::ClusterError::Catalog(e) => e.into(),
        crate::cluster::ClusterError::PullTimeout(msg) => {
            ApiError::Unavailable(crate::cluster::ClusterError::PullTimeout(msg).to_string())
        }
        e @ crate::cluster::ClusterError::TooManyEdges(_) => ApiError::Unavailable(e.to_string()),
        e @ crate::cluster::ClusterError::Loop(_) => ApiError::Conflict(e.to_string()),
    }
}

/// `POST /whep/{channel}?edge={node}[&quality=Q][&codec=vp8]`: another node's signed pull
/// of one rendition in one codec (401 without a valid signature). Exempt from the per-address WHEP limits and from `max_viewers`; no
/// attendance row (the edge's residents have theirs).
pub(super) async fn edge_pull(
    channel: String,
    content_type: Option<String>,
    query: super::WhepQuery,
    edge: i64,
    signature: Option<String>,
    body: Bytes,
    state: State,
) -> Result<Response, ApiError> {
    let Some(cluster) = &state.cluster else {
        return Err(ApiError::Unauthorized(
            crate::cluster::sign::SignatureError::NotMember.to_string(),
        ));
    };
    cluster
        .verify_pull(&format!("/whep/{channel}"), signature.as_deref())
        .map_err(|e| ApiError::Unauthorized(e.to_string()))?;
    let channel = parse_channel(&channel)?;
    let codec = query.codec.unwrap_or_else(|| "h264".into());
    if !matches!(codec.as_str(), "h264" | "vp8") {
        return Err(ApiError::BadRequest(format!(
            "an edge pull's codec is h264 or vp8, not {codec:?}"
        )));
    }
    let offer = check_sdp_body(content_type, &body)?;
    let key = crate::cluster::PullKey {
        edge,
        quality: query
            .quality
            .clone()
            .unwrap_or_else(|| crate::config::SOURCE_QUALITY.into()),
        codec,
    };
    cluster
        .admit_pull(&channel, &key)
        .await
        .map_err(cluster_error)?;
    let viewer = ViewerInfo {
        terminal: "other",
        viewer_key: format!("{}{edge}", crate::audience::EDGE_PULL_KEY),
        client_hash: String::new(),
        quality: query.quality,
        client: None,
        edge_pull: true,
    };
    let accepted = state.relay.view(channel.clone(), offer, viewer).await;
    cluster.pull_accepted(
        &channel,
        &key,
        accepted.as_ref().ok().map(|a| a.resource.as_str()),
    );
    let accepted = accepted?;
    Ok(created(
        format!("/whep/{channel}/{}", accepted.resource),
        accepted.answer,
    ))
}
