//! Pumps frames between a client's WebSocket and the runtime. The socket
//! task lives here, not in the object, so the object can hibernate while
//! the connection stays open.

use axum::extract::ws::{CloseFrame, Message, WebSocket as AxumSocket};
use futures_util::{SinkExt, StreamExt};

use crate::runtime::{AcceptedSocket, Id, Runtime, WsMessage, WsOut};

pub(crate) async fn pump(rt: Runtime, id: Id, accepted: AcceptedSocket, socket: AxumSocket) {
    let AcceptedSocket {
        socket: ws,
        mut outgoing,
    } = accepted;
    let (mut sink, mut stream) = socket.split();
    let writer = tokio::spawn(async move {
        while let Some(out) = outgoing.recv().await {
            let msg = match out {
                WsOut::Text(t) => Message::Text(t.into()),
                WsOut::Binary(b) => Message::Binary(b.into()),
                WsOut::Close(code, reason) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    break;
                }
            };
            if sink.send(msg).await.is_err() {
                break;
            }
        }
    });
    let mut reported = false;
    while let Some(msg) = stream.next().await {
        let msg = match msg {
            Ok(Message::Text(t)) => WsMessage::Text(t.to_string()),
            Ok(Message::Binary(b)) => WsMessage::Binary(b.to_vec()),
            Ok(Message::Close(frame)) => {
                let (code, reason) = frame
                    .map(|f| (f.code, f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                rt.websocket_closed(&id, &ws, code, &reason);
                reported = true;
                break;
            }
            Ok(_) => continue, // ping and pong are answered by the stack
            Err(e) => {
                rt.websocket_error(&id, &ws, &e.to_string());
                reported = true;
                break;
            }
        };
        if let Err(e) = rt.websocket_message(&id, &ws, msg) {
            tracing::warn!(object = %id, error = %e, "socket message refused; closing");
            rt.websocket_error(&id, &ws, &e.to_string());
            reported = true;
            break;
        }
    }
    if !reported {
        rt.websocket_closed(&id, &ws, 1006, "connection dropped");
    }
    // Let a pending close frame go out, then stop.
    let _ = tokio::time::timeout(super::SOCKET_CLOSE_GRACE, writer).await;
}

/// Sends 1001 (going away) to every open socket, and waits briefly for the
/// frames to leave.
pub(crate) async fn close_all(rt: &Runtime) {
    if rt.close_all_websockets(1001, "server shutting down") > 0 {
        tokio::time::sleep(super::SOCKET_CLOSE_GRACE / 2).await;
    }
}
