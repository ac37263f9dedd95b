//! What a handler can do during its turn: use storage, learn its own id,
//! send messages and socket frames (held by the output gate), accept and
//! look up sockets, and block concurrency until a write is durable.

use std::sync::Arc;

use super::id::Id;
use super::namespace::{Namespace, Stub};
use super::slot::{Event, ReplyTo, Slot};
use super::websocket::{self, AcceptedSocket, WebSocket, WsMessage, WsOut};
use super::Inner;
use crate::error::{Error, ErrorKind, Result};
use crate::object::Object;

/// An output held until the turn's commit is durable: called with `Ok` to
/// release it, or with the error that broke the commit.
pub(crate) type Action = Box<dyn FnOnce(Result<()>) + Send>;

#[derive(Default)]
pub(crate) struct TurnState {
    pub(crate) held: Vec<Action>,
    pub(crate) accepted: Option<AcceptedSocket>,
    /// Reset the instance after this turn (a `block_concurrency_while`
    /// closure failed).
    pub(crate) reset: bool,
}

/// A handler's view of its object and the runtime, for one turn.
pub struct Ctx<'a> {
    pub(crate) obj: &'a mut Object,
    pub(crate) inner: &'a Arc<Inner>,
    pub(crate) slot: &'a Arc<Slot>,
    pub(crate) turn: &'a mut TurnState,
}

impl<'a> Ctx<'a> {
    /// The object's storage: SQL, KV and alarms. Writes commit at the end
    /// of the turn.
    pub fn storage(&mut self) -> &mut Object {
        self.obj
    }

    /// This object's id.
    pub fn id(&self) -> &Id {
        &self.slot.id
    }

    /// The name this object's id was made from (`None` for unique ids).
    pub fn name(&self) -> Option<&str> {
        self.slot.id.name()
    }

    /// The injected clock, in ms since the epoch.
    pub fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// Runs `f`, commits, and waits until the commit is durable before this
    /// event ends, so no other event of this object runs until then (the
    /// input gate stays closed across the fsync, where a normal turn lets
    /// the next event start while its reply waits). If `f` fails, the
    /// instance is reset when the handler returns, and nothing the turn
    /// wrote after the last durable point commits, as in Durable Objects.
    pub fn block_concurrency_while<T>(
        &mut self,
        f: impl FnOnce(&mut Object) -> Result<T>,
    ) -> Result<T> {
        match f(self.obj) {
            Ok(v) => {
                let ticket = self.obj.end_turn()?;
                ticket.wait()?;
                Ok(v)
            }
            Err(e) => {
                self.turn.reset = true;
                Err(e)
            }
        }
    }

    /// The namespace of another (or this) class, to reach other objects.
    pub fn namespace(&self, class: &str) -> Result<Namespace> {
        self.inner.namespace(class)
    }

    /// Calls `method` on `to` (which may be this object). The call is sent
    /// once this turn is durable; the reply arrives later as an
    /// `rpc_reply(token, ..)` event, so a call to yourself cannot deadlock.
    pub fn call(&mut self, to: &Stub, method: &str, body: impl Into<Vec<u8>>, token: u64) {
        let inner = self.inner.clone();
        let (target, me, method, body) = (
            to.id.clone(),
            self.slot.id.clone(),
            method.to_owned(),
            body.into(),
        );
        self.turn.held.push(Box::new(move |gate| {
            if gate.is_err() {
                return; // this object is being reset; nobody awaits the reply
            }
            let ev = Event::Call {
                method,
                body,
                reply: ReplyTo::Object(me.clone(), token),
            };
            if let Err(e) = inner.enqueue(&target, ev) {
                let _ = inner.enqueue(
                    &me,
                    Event::RpcReply {
                        token,
                        result: Err(e),
                    },
                );
            }
        }));
    }

    /// Sends a one-way message (`call` without a reply). Dropped, and
    /// counted in the metrics, if the target is overloaded.
    pub fn tell(&mut self, to: &Stub, method: &str, body: impl Into<Vec<u8>>) {
        let inner = self.inner.clone();
        let (target, method, body) = (to.id.clone(), method.to_owned(), body.into());
        self.turn.held.push(Box::new(move |gate| {
            if gate.is_ok() {
                let ev = Event::Call {
                    method,
                    body,
                    reply: ReplyTo::Nobody,
                };
                if let Err(e) = inner.enqueue(&target, ev) {
                    tracing::warn!(target = %target, error = %e, "one-way message dropped");
                }
            }
        }));
    }

    /// Accepts the WebSocket of the request being handled, with up to 10
    /// tags of up to 256 bytes. Return `Response::switching_protocols()`.
    /// The socket outlives the instance: it stays open while the object
    /// hibernates, and its events wake the object.
    pub fn accept_websocket(&mut self, tags: &[&str]) -> Result<WebSocket> {
        if self.turn.accepted.is_some() {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                "a request can accept one socket",
            ));
        }
        let id = self.inner.next_socket_id();
        let accepted = self.slot.sockets().accept(id, tags)?;
        let ws = accepted.socket;
        self.turn.accepted = Some(accepted);
        Ok(ws)
    }

    /// Open sockets of this object, all of them or those with `tag`.
    pub fn get_websockets(&self, tag: Option<&str>) -> Vec<WebSocket> {
        self.slot.sockets().with_tag(tag)
    }

    pub fn websocket_tags(&self, ws: &WebSocket) -> Vec<String> {
        self.slot
            .sockets()
            .open
            .get(&ws.id())
            .map(|e| e.tags.clone())
            .unwrap_or_default()
    }

    /// Sends a frame, once this turn's writes are durable.
    pub fn send(&mut self, ws: &WebSocket, msg: WsMessage) {
        let out = match msg {
            WsMessage::Text(t) => WsOut::Text(t),
            WsMessage::Binary(b) => WsOut::Binary(b),
        };
        self.hold_frame(ws, out);
    }

    /// Closes a socket, once this turn's writes are durable.
    pub fn close_websocket(&mut self, ws: &WebSocket, code: u16, reason: &str) {
        self.hold_frame(ws, WsOut::Close(code, reason.to_owned()));
    }

    fn hold_frame(&mut self, ws: &WebSocket, out: WsOut) {
        if let Some(tx) = self.slot.sockets().sender(ws.id()) {
            self.turn.held.push(Box::new(move |gate| {
                if gate.is_ok() {
                    let _ = tx.send(out);
                }
            }));
        }
    }

    /// Stores up to 16 KiB with the socket. It survives hibernation (the
    /// runtime keeps it, not the instance), but not a process restart.
    pub fn set_attachment(&mut self, ws: &WebSocket, bytes: &[u8]) -> Result<()> {
        websocket::check_attachment(bytes)?;
        match self.slot.sockets().open.get_mut(&ws.id()) {
            Some(e) => {
                e.attachment = Some(bytes.to_vec());
                Ok(())
            }
            None => Err(Error::new(ErrorKind::InvalidInput, "socket is not open")),
        }
    }

    pub fn attachment(&self, ws: &WebSocket) -> Option<Vec<u8>> {
        self.slot
            .sockets()
            .open
            .get(&ws.id())
            .and_then(|e| e.attachment.clone())
    }

    /// Sets (or with `None`, clears) the request/response text pair the
    /// runtime answers by itself, without waking the object.
    pub fn set_websocket_auto_response(&mut self, pair: Option<(&str, &str)>) -> Result<()> {
        if let Some((req, resp)) = pair {
            websocket::check_auto_response(req, resp)?;
        }
        self.slot.sockets().auto_response = pair.map(|(a, b)| (a.to_owned(), b.to_owned()));
        Ok(())
    }

    /// When the runtime last auto-responded on `ws` (clock ms).
    pub fn auto_response_timestamp(&self, ws: &WebSocket) -> Option<u64> {
        self.slot
            .sockets()
            .open
            .get(&ws.id())
            .and_then(|e| e.last_auto_response_ms)
    }
}
