//! Cluster mode: a request for an object another live host owns is sent
//! on to that host, and its reply comes back unchanged. WebSocket upgrades
//! are redirected instead (a socket cannot be proxied through one reply).

use std::sync::OnceLock;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};

use super::http::{error_response, FORWARDED_HEADER};
use crate::error::Error;

/// How long a forwarded request may take, end to end: the lease TTL,
/// within these bounds.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
const MIN_FORWARD_TIMEOUT: Duration = Duration::from_secs(5);

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(FORWARD_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default()
    })
}

fn retry_later(msg: String) -> HttpResponse {
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, msg).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// Headers that describe one connection, not the request.
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "host"
            | "content-length"
    )
}

/// Sends the request to the owner named by `e` (a `NotOwner` error).
pub(super) async fn to_owner(
    cluster: Option<&std::sync::Arc<crate::cluster::Cluster>>,
    e: &Error,
    parts: &Parts,
    body: Bytes,
    websocket: bool,
    hops: u32,
) -> HttpResponse {
    let Some(addr) = e.owner() else {
        return error_response(e);
    };
    if hops > 0 {
        // Forwarded once already and still not the owner: ownership is
        // moving. The client retries; no loops between hosts.
        return retry_later(format!("NotOwner: ownership is moving ({e}); retry\n"));
    }
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("http://{addr}{pq}");
    if websocket {
        let mut r = StatusCode::TEMPORARY_REDIRECT.into_response();
        if let Ok(v) = HeaderValue::try_from(url) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        return r;
    }
    // A stopped owner still accepts connections (the kernel does) but never
    // answers; past about a lease TTL it may be dead, so the client should
    // retry and let ownership be looked up again.
    let timeout = cluster
        .map(|c| c.lease_ttl().max(MIN_FORWARD_TIMEOUT))
        .unwrap_or(FORWARD_TIMEOUT)
        .min(FORWARD_TIMEOUT);
    let mut req = client()
        .request(parts.method.clone(), &url)
        .timeout(timeout)
        .body(body);
    for (k, v) in &parts.headers {
        if !hop_by_hop(k.as_str()) && k.as_str() != FORWARDED_HEADER {
            req = req.header(k, v);
        }
    }
    req = req.header(FORWARDED_HEADER, (hops + 1).to_string());
    let resp = match req.send().await {
        Ok(r) => r,
        Err(err) => {
            tracing::warn!(owner = addr, error = %err, "forwarding failed");
            if let Some(c) = cluster {
                c.unreachable(addr);
            }
            if err.is_connect() {
                // Never reached the owner: nothing happened; retry.
                return retry_later(format!(
                    "NotOwner: the owner at {addr} could not be reached: {err}\n"
                ));
            }
            // Sent, but no answer: the owner may have carried it out.
            return (
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "Timeout: the owner at {addr} did not answer; the outcome is unknown: {err}\n"
                ),
            )
                .into_response();
        }
    };
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = match resp.bytes().await {
        Ok(b) => b,
        Err(err) => {
            return retry_later(format!(
                "NotOwner: the owner at {addr} broke off its reply: {err}\n"
            ))
        }
    };
    let mut out = HttpResponse::new(Body::from(bytes));
    *out.status_mut() = status;
    for (k, v) in &headers {
        if !hop_by_hop(k.as_str()) {
            out.headers_mut().append(k, v.clone());
        }
    }
    out
}
