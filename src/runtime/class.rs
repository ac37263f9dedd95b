//! What a user implements: an object class with handlers for requests,
//! RPC calls, alarms and WebSocket events, plus the plain types they take.

use super::ctx::Ctx;
use super::websocket::{AcceptedSocket, WebSocket, WsMessage};
use crate::error::{Error, ErrorKind, Result};

/// An object class. One value of it is the live instance of one object;
/// the runtime creates it on activation (first event, or wake from
/// hibernation) and drops it on eviction. Keep durable state in
/// `ctx.storage()`; fields are a cache that disappears with the instance.
///
/// Every handler runs as one turn: no other event of the same object runs
/// meanwhile (the input gate), its writes commit together at the end, and
/// what it returns or sends is released only once the commit is durable
/// (the output gate). A handler that returns `Err` still commits what it
/// wrote, as in Durable Objects; a handler that panics resets the instance.
pub trait ObjectClass: Send + 'static {
    /// Runs on every activation, before the first event. A good place for
    /// `CREATE TABLE IF NOT EXISTS` and warming fields. An error fails the
    /// event that caused the activation.
    fn start(&mut self, _ctx: &mut Ctx<'_>) -> Result<()> {
        Ok(())
    }

    /// An HTTP-style request.
    fn fetch(&mut self, ctx: &mut Ctx<'_>, req: Request) -> Result<Response>;

    /// An RPC call from a stub (`Stub::call`, `Ctx::call`, `Ctx::tell`).
    fn call(&mut self, _ctx: &mut Ctx<'_>, method: &str, _body: Vec<u8>) -> Result<Vec<u8>> {
        Err(Error::new(
            ErrorKind::InvalidInput,
            format!("this class has no RPC method `{method}`"),
        ))
    }

    /// The reply to a `Ctx::call` this object made, delivered as its own
    /// event. `token` is the one passed to `Ctx::call`.
    fn rpc_reply(
        &mut self,
        _ctx: &mut Ctx<'_>,
        _token: u64,
        _reply: Result<Vec<u8>>,
    ) -> Result<()> {
        Ok(())
    }

    /// An alarm came due. Returning `Err` schedules a retry with backoff.
    fn alarm(&mut self, _ctx: &mut Ctx<'_>, _alarm: &AlarmInfo) -> Result<()> {
        Ok(())
    }

    /// A message arrived on an accepted WebSocket.
    fn websocket_message(
        &mut self,
        _ctx: &mut Ctx<'_>,
        _ws: &WebSocket,
        _msg: WsMessage,
    ) -> Result<()> {
        Ok(())
    }

    /// The peer closed the socket (or it was dropped).
    fn websocket_close(
        &mut self,
        _ctx: &mut Ctx<'_>,
        _ws: &WebSocket,
        _code: u16,
        _reason: &str,
    ) -> Result<()> {
        Ok(())
    }

    /// The socket failed (protocol error, broken connection).
    fn websocket_error(&mut self, _ctx: &mut Ctx<'_>, _ws: &WebSocket, _error: &str) -> Result<()> {
        Ok(())
    }
}

/// What the alarm handler is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmInfo {
    /// The alarm's name; empty for the default alarm.
    pub name: String,
    /// The time the alarm was set for, in ms since the epoch.
    pub scheduled_ms: u64,
    /// 0 on the first attempt, then 1, 2, ... on retries.
    pub retry_count: u32,
    /// `retry_count > 0`.
    pub is_retry: bool,
}

/// A request to an object. `path` is what follows `/{class}/{name}` in
/// the URL (empty or starting with `/`); `query` is without the `?`.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The client asked to upgrade to a WebSocket. Accept it with
    /// `Ctx::accept_websocket` and return `Response::switching_protocols()`.
    pub websocket: bool,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Request {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            ..Request::default()
        }
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Request {
        self.body = body.into();
        self
    }

    /// The first value of query parameter `key` (no percent-decoding).
    pub fn query_param(&self, key: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An object's reply.
#[derive(Debug, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub(crate) websocket: Option<AcceptedSocket>,
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            body: body.into(),
            ..Response::default()
        }
    }

    pub fn ok(body: impl Into<Vec<u8>>) -> Response {
        Response::new(200, body)
    }

    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response::new(status, body.into().into_bytes())
            .with_header("content-type", "text/plain; charset=utf-8")
    }

    pub fn not_found() -> Response {
        Response::text(404, "not found\n")
    }

    /// The reply to a request whose socket was accepted.
    pub fn switching_protocols() -> Response {
        Response::new(101, Vec::new())
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The socket accepted during the turn that produced this response, for
    /// the host to connect to the client. Taken once.
    pub fn take_websocket(&mut self) -> Option<AcceptedSocket> {
        self.websocket.take()
    }
}
