//! Hibernatable WebSockets. The runtime, not the instance, owns each
//! accepted socket's tags, attachment and outgoing channel, so sockets stay
//! open and attachments survive while the instance is evicted. The host
//! (the HTTP server) owns the connection and pumps frames both ways.

use std::collections::BTreeMap;

use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::error::{Error, ErrorKind, Result};

/// Most tags per socket.
pub const MAX_TAGS: usize = 10;
/// Longest tag, in bytes.
pub const MAX_TAG_BYTES: usize = 256;
/// Largest attachment, in bytes.
pub const MAX_ATTACHMENT_BYTES: usize = 16 * 1024;
/// Longest auto-response request or response string, in bytes.
pub const MAX_AUTO_RESPONSE_BYTES: usize = 2048;

/// A handle to an accepted socket of the current object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WebSocket {
    id: u64,
}

impl WebSocket {
    pub(crate) fn new(id: u64) -> WebSocket {
        WebSocket { id }
    }

    /// Unique among the sockets of one runtime.
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// A data frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    Text(String),
    Binary(Vec<u8>),
}

/// A frame for the host to write to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsOut {
    Text(String),
    Binary(Vec<u8>),
    Close(u16, String),
}

/// A socket accepted by an object, handed to the host with the response.
#[derive(Debug)]
pub struct AcceptedSocket {
    pub socket: WebSocket,
    /// Frames the object sends, already released by the output gate.
    pub outgoing: UnboundedReceiver<WsOut>,
}

pub(crate) struct SocketEntry {
    pub(crate) tags: Vec<String>,
    pub(crate) attachment: Option<Vec<u8>>,
    tx: UnboundedSender<WsOut>,
    pub(crate) last_auto_response_ms: Option<u64>,
}

/// One object's sockets.
#[derive(Default)]
pub(crate) struct Sockets {
    pub(crate) open: BTreeMap<u64, SocketEntry>,
    pub(crate) auto_response: Option<(String, String)>,
}

impl Sockets {
    pub(crate) fn accept(&mut self, id: u64, tags: &[&str]) -> Result<AcceptedSocket> {
        check_tags(tags)?;
        let (tx, rx) = unbounded_channel();
        self.open.insert(
            id,
            SocketEntry {
                tags: tags.iter().map(|t| t.to_string()).collect(),
                attachment: None,
                tx,
                last_auto_response_ms: None,
            },
        );
        Ok(AcceptedSocket {
            socket: WebSocket::new(id),
            outgoing: rx,
        })
    }

    pub(crate) fn sender(&self, id: u64) -> Option<UnboundedSender<WsOut>> {
        self.open.get(&id).map(|e| e.tx.clone())
    }

    pub(crate) fn with_tag(&self, tag: Option<&str>) -> Vec<WebSocket> {
        self.open
            .iter()
            .filter(|(_, e)| tag.is_none_or(|t| e.tags.iter().any(|x| x == t)))
            .map(|(id, _)| WebSocket::new(*id))
            .collect()
    }

    /// Answers `text` without waking the object if it is the auto-response
    /// request. Returns true when answered.
    pub(crate) fn try_auto_respond(&mut self, id: u64, text: &str, now_ms: u64) -> bool {
        let Some((req, resp)) = &self.auto_response else {
            return false;
        };
        if req != text {
            return false;
        }
        let Some(e) = self.open.get_mut(&id) else {
            return false;
        };
        let _ = e.tx.send(WsOut::Text(resp.clone()));
        e.last_auto_response_ms = Some(now_ms);
        true
    }
}

fn check_tags(tags: &[&str]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::new(
            ErrorKind::LimitExceeded,
            format!(
                "{} tags given; a socket takes at most {MAX_TAGS}",
                tags.len()
            ),
        ));
    }
    for t in tags {
        if t.is_empty() || t.len() > MAX_TAG_BYTES {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                format!("a tag must be 1 to {MAX_TAG_BYTES} bytes, got {}", t.len()),
            ));
        }
    }
    Ok(())
}

pub(crate) fn check_attachment(bytes: &[u8]) -> Result<()> {
    if bytes.len() > MAX_ATTACHMENT_BYTES {
        return Err(Error::new(
            ErrorKind::LimitExceeded,
            format!(
                "attachment is {} bytes; the limit is {MAX_ATTACHMENT_BYTES}",
                bytes.len()
            ),
        ));
    }
    Ok(())
}

pub(crate) fn check_auto_response(req: &str, resp: &str) -> Result<()> {
    if req.is_empty() || req.len() > MAX_AUTO_RESPONSE_BYTES || resp.len() > MAX_AUTO_RESPONSE_BYTES
    {
        return Err(Error::new(
            ErrorKind::LimitExceeded,
            format!("auto-response strings must be 1 to {MAX_AUTO_RESPONSE_BYTES} bytes"),
        ));
    }
    Ok(())
}
