//! `chat`: a room. Messages are stored in SQL; a client joining over a
//! hibernatable WebSocket gets the history, and every message is broadcast
//! to every socket of the room. The sender's name lives in the socket's
//! attachment, so it survives the room hibernating between messages.
//!
//! | route | does |
//! |---|---|
//! | `GET /chat/{room}` | the web page |
//! | `GET /chat/{room}/ws?name=N` (upgrade) | joins the room |
//! | `GET /chat/{room}/history` | JSON array of stored messages |
//!
//! Socket text `ping` is answered `pong` by the runtime without waking
//! the room (an auto-response).

use serde_json::json;

use crate::error::{Error, ErrorKind, Result};
use crate::runtime::{Ctx, ObjectClass, Request, Response, WebSocket, WsMessage};

/// Messages kept in a join's history.
const HISTORY: i64 = 100;
/// Longest message, in bytes.
const MAX_MESSAGE_BYTES: usize = 4096;
/// Longest user name, in characters.
const MAX_NAME_CHARS: usize = 64;

const PAGE: &str = include_str!("chat.html");

#[derive(Default)]
pub struct Chat;

impl ObjectClass for Chat {
    fn start(&mut self, ctx: &mut Ctx<'_>) -> Result<()> {
        let obj = ctx.storage();
        if !super::table_exists(obj, "msgs")? {
            obj.exec(
                "CREATE TABLE msgs (id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, \
                 name TEXT NOT NULL, body TEXT NOT NULL)",
                &[],
            )?;
        }
        ctx.set_websocket_auto_response(Some(("ping", "pong")))
    }

    fn fetch(&mut self, ctx: &mut Ctx<'_>, req: Request) -> Result<Response> {
        match (req.method.as_str(), req.path.as_str()) {
            ("GET", "" | "/") => {
                Ok(Response::ok(PAGE).with_header("content-type", "text/html; charset=utf-8"))
            }
            ("GET", "/history") => {
                let body = serde_json::to_vec(&history(ctx)?).map_err(json_err)?;
                Ok(Response::ok(body).with_header("content-type", "application/json"))
            }
            ("GET", "/ws") if req.websocket => {
                let name = clean_name(req.query_param("name").unwrap_or("guest"));
                let ws = ctx.accept_websocket(&["room"])?;
                ctx.set_attachment(&ws, name.as_bytes())?;
                let hello = json!({"type": "history", "messages": history(ctx)?});
                ctx.send(&ws, WsMessage::Text(hello.to_string()));
                Ok(Response::switching_protocols())
            }
            ("GET", "/ws") => Ok(Response::text(426, "upgrade to a WebSocket\n")),
            _ => Ok(Response::not_found()),
        }
    }

    fn websocket_message(
        &mut self,
        ctx: &mut Ctx<'_>,
        ws: &WebSocket,
        msg: WsMessage,
    ) -> Result<()> {
        let text = match msg {
            WsMessage::Text(t) => t,
            WsMessage::Binary(_) => return Ok(()),
        };
        if text.is_empty() || text.len() > MAX_MESSAGE_BYTES {
            ctx.send(
                ws,
                WsMessage::Text(
                    json!({"type": "error", "error": "message must be 1 to 4096 bytes"})
                        .to_string(),
                ),
            );
            return Ok(());
        }
        let name = ctx
            .attachment(ws)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_else(|| "guest".to_owned());
        let ts = ctx.now_ms() as i64;
        ctx.storage().exec(
            "INSERT INTO msgs (ts, name, body) VALUES (?1, ?2, ?3)",
            &[ts.into(), (&name).into(), (&text).into()],
        )?;
        let out = json!({"type": "message", "ts": ts, "name": name, "text": text}).to_string();
        for peer in ctx.get_websockets(Some("room")) {
            ctx.send(&peer, WsMessage::Text(out.clone()));
        }
        Ok(())
    }

    fn websocket_close(
        &mut self,
        ctx: &mut Ctx<'_>,
        ws: &WebSocket,
        _code: u16,
        _reason: &str,
    ) -> Result<()> {
        ctx.close_websocket(ws, 1000, "bye");
        Ok(())
    }
}

fn history(ctx: &mut Ctx<'_>) -> Result<Vec<serde_json::Value>> {
    let rows = ctx
        .storage()
        .exec(
            "SELECT ts, name, body FROM (SELECT * FROM msgs ORDER BY id DESC LIMIT ?1) ORDER BY id",
            &[HISTORY.into()],
        )?
        .to_vec()?;
    Ok(rows
        .iter()
        .map(|r| {
            json!({
                "ts": r.get(0).and_then(|v| v.as_i64()),
                "name": r.get(1).and_then(|v| v.as_str()),
                "text": r.get(2).and_then(|v| v.as_str()),
            })
        })
        .collect())
}

fn clean_name(raw: &str) -> String {
    let decoded = percent_decode(raw);
    let name: String = decoded
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_NAME_CHARS)
        .collect();
    if name.trim().is_empty() {
        "guest".to_owned()
    } else {
        name
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn json_err(e: serde_json::Error) -> Error {
    Error::new(ErrorKind::InvalidInput, format!("json: {e}"))
}
