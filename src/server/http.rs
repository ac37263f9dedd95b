//! HTTP routing: requests to objects, metrics, and WebSocket upgrades.

use std::sync::Arc;

use axum::body::{to_bytes, Body};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path, Request as HttpRequest, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response as HttpResponse};
use axum::routing::{any, get};
use axum::Router;

use super::{ws, Shared};
use crate::error::{Error, ErrorKind};
use crate::runtime::{Request, Runtime};

/// Cluster mode: the incarnation of the host whose runtime served a reply.
pub const HOST_HEADER: &str = "x-amber-host";
/// Cluster mode: how many times a request was forwarded (loop guard).
pub const FORWARDED_HEADER: &str = "x-amber-forwarded";

/// Largest request body the host reads, in bytes.
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// The host's routes over `rt`.
pub fn router(rt: Runtime) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/cluster", get(cluster_hosts))
        .route("/{class}/{name}", any(object_root))
        .route("/{class}/{name}/{*rest}", any(object_path))
        .with_state(Arc::new(rt))
}

async fn index(State(rt): State<Shared>) -> String {
    let mut s = String::from("amber serve: routes are /{class}/{name}/...\nclasses:\n");
    for c in rt.classes() {
        s.push_str(&format!("  /{c}/{{name}}\n"));
    }
    s.push_str("  /metrics\n");
    s
}

async fn metrics(State(rt): State<Shared>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
        rt.render_metrics(),
    )
}

/// Cluster mode: every host with a lease record in the bucket.
async fn cluster_hosts(State(rt): State<Shared>) -> HttpResponse {
    let Some(c) = rt.store().cluster().cloned() else {
        return (StatusCode::NOT_FOUND, "not in cluster mode\n").into_response();
    };
    let me = c.incarnation();
    let now = rt.store().config().clock.now_ms();
    match tokio::task::spawn_blocking(move || c.hosts()).await {
        Ok(Ok(hosts)) => {
            let list: Vec<serde_json::Value> = hosts
                .iter()
                .map(|h| {
                    serde_json::json!({
                        "host": h.host,
                        "addr": h.addr,
                        "live": h.live_at(now),
                        "self": h.host == me,
                    })
                })
                .collect();
            (
                [("content-type", "application/json")],
                serde_json::Value::Array(list).to_string(),
            )
                .into_response()
        }
        Ok(Err(e)) => error_response(&e),
        Err(e) => error_response(&Error::new(ErrorKind::Io, e.to_string())),
    }
}

async fn object_root(
    State(rt): State<Shared>,
    Path((class, name)): Path<(String, String)>,
    req: HttpRequest,
) -> HttpResponse {
    to_object(rt, class, name, String::new(), req).await
}

async fn object_path(
    State(rt): State<Shared>,
    Path((class, name, rest)): Path<(String, String, String)>,
    req: HttpRequest,
) -> HttpResponse {
    to_object(rt, class, name, format!("/{rest}"), req).await
}

async fn to_object(
    rt: Shared,
    class: String,
    name: String,
    path: String,
    req: HttpRequest,
) -> HttpResponse {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let mut resp = dispatch(rt.clone(), &class, &name, path.clone(), req).await;
    if let Some(c) = rt.store().cluster() {
        if !resp.headers().contains_key(HOST_HEADER) {
            if let Ok(v) = HeaderValue::try_from(c.incarnation()) {
                resp.headers_mut().insert(HOST_HEADER, v);
            }
        }
    }
    tracing::debug!(
        %method,
        class,
        name,
        path,
        status = resp.status().as_u16(),
        micros = started.elapsed().as_micros() as u64,
        "request"
    );
    resp
}

async fn dispatch(
    rt: Shared,
    class: &str,
    name: &str,
    path: String,
    req: HttpRequest,
) -> HttpResponse {
    let (mut parts, body) = req.into_parts();
    let hops: u32 = parts
        .headers
        .get(FORWARDED_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let upgrade = if is_upgrade(&parts.headers) {
        WebSocketUpgrade::from_request_parts(&mut parts, &())
            .await
            .ok()
    } else {
        None
    };
    let body = match to_bytes(body, MAX_BODY_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return error_response(&Error::new(
                ErrorKind::LimitExceeded,
                format!("request body over {MAX_BODY_BYTES} bytes"),
            ))
        }
    };
    let stub = match rt
        .namespace(class)
        .and_then(|ns| ns.id_from_name(name).and_then(|id| ns.get(&id)))
    {
        Ok(s) => s,
        Err(e) => return error_response(&e),
    };
    let request = Request {
        method: parts.method.as_str().to_owned(),
        path,
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers: parts
            .headers
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect(),
        body: body.to_vec(),
        websocket: upgrade.is_some(),
    };
    let mut reply = match stub.fetch(request).await {
        Ok(r) => r,
        Err(e) if e.kind() == ErrorKind::NotOwner => {
            return super::forward::to_owner(
                rt.store().cluster(),
                &e,
                &parts,
                body,
                upgrade.is_some(),
                hops,
            )
            .await
        }
        Err(e) => return error_response(&e),
    };
    if let Some(accepted) = reply.take_websocket() {
        let id = stub.id().clone();
        return match upgrade {
            Some(up) => {
                let rt = (*rt).clone();
                up.on_upgrade(move |socket| ws::pump(rt, id, accepted, socket))
            }
            None => {
                rt.websocket_closed(&id, &accepted.socket, 1002, "not a WebSocket request");
                (StatusCode::BAD_REQUEST, "expected a WebSocket upgrade\n").into_response()
            }
        };
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = HttpResponse::new(Body::from(reply.body));
    *resp.status_mut() = status;
    for (k, v) in reply.headers {
        if let (Ok(k), Ok(v)) = (HeaderName::try_from(k), HeaderValue::try_from(v)) {
            resp.headers_mut().append(k, v);
        }
    }
    resp
}

fn is_upgrade(h: &axum::http::HeaderMap) -> bool {
    h.get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Maps an error to a status a client can act on.
pub(super) fn error_response(e: &Error) -> HttpResponse {
    let status = match e.kind() {
        ErrorKind::InvalidInput | ErrorKind::NotAllowed => StatusCode::BAD_REQUEST,
        ErrorKind::LimitExceeded => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Overloaded
        | ErrorKind::Closed
        | ErrorKind::Locked
        | ErrorKind::Fenced
        | ErrorKind::NotOwner => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::StorageFull => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if status.is_server_error() {
        tracing::warn!(kind = ?e.kind(), error = %e, "request failed");
    }
    let mut resp = (status, format!("{:?}: {}\n", e.kind(), e)).into_response();
    if matches!(e.kind(), ErrorKind::Overloaded | ErrorKind::Fenced) {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
    }
    resp
}
