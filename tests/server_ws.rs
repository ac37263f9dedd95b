//! The chat class over real WebSockets against a spawned `amber serve`:
//! history on join, broadcast, the auto-response, and history across a
//! server restart.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use support::server::Server;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(srv: &Server, room: &str, name: &str) -> Ws {
    let url = format!("ws://{}/chat/{room}/ws?name={name}", srv.addr);
    let (ws, resp) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(resp.status().as_u16(), 101);
    ws
}

async fn next_text(ws: &mut Ws) -> String {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a frame within 5 s")
            .expect("socket open")
            .unwrap();
        if let Message::Text(t) = msg {
            return t.to_string();
        }
    }
}

async fn next_json(ws: &mut Ws) -> Value {
    serde_json::from_str(&next_text(ws).await).unwrap()
}

#[test]
fn chat_broadcasts_answers_pings_and_keeps_history_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut srv = Server::start(dir.path());
    rt.block_on(async {
        let mut alice = connect(&srv, "lobby", "alice").await;
        let hello = next_json(&mut alice).await;
        assert_eq!(hello["type"], "history");
        assert_eq!(hello["messages"].as_array().unwrap().len(), 0);
        let mut bob = connect(&srv, "lobby", "bob").await;
        assert_eq!(next_json(&mut bob).await["type"], "history");

        alice.send(Message::Text("hello bob".into())).await.unwrap();
        for ws in [&mut alice, &mut bob] {
            let m = next_json(ws).await;
            assert_eq!(
                (m["type"].as_str(), m["name"].as_str(), m["text"].as_str()),
                (Some("message"), Some("alice"), Some("hello bob"))
            );
        }
        // Answered by the runtime's auto-response.
        bob.send(Message::Text("ping".into())).await.unwrap();
        assert_eq!(next_text(&mut bob).await, "pong");
        // Another room does not see lobby traffic.
        let mut carol = connect(&srv, "elsewhere", "carol").await;
        assert_eq!(
            next_json(&mut carol).await["messages"]
                .as_array()
                .unwrap()
                .len(),
            0
        );
    });
    let (status, page) = srv.get("/chat/lobby");
    assert_eq!(status, 200);
    assert!(page.contains("amber chat"));
    let (status, hist) = srv.get("/chat/lobby/history");
    assert_eq!(status, 200);
    assert!(hist.contains("hello bob"));
    // Clients are told the server is going away, and the history stays.
    assert!(srv.terminate(10).success());
    let srv = Server::start(dir.path());
    rt.block_on(async {
        let mut dave = connect(&srv, "lobby", "dave").await;
        let hello = next_json(&mut dave).await;
        let msgs = hello["messages"].as_array().unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0]["text"], "hello bob");
        assert_eq!(msgs[0]["name"], "alice");
    });
}

#[test]
fn shutdown_closes_sockets_with_going_away() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut srv = Server::start(dir.path());
    let mut ws = rt.block_on(async {
        let mut ws = connect(&srv, "r", "x").await;
        next_text(&mut ws).await;
        ws
    });
    let pid = srv.child.id();
    let waiter = std::thread::spawn(move || {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    });
    let code = rt.block_on(async {
        loop {
            match tokio::time::timeout(Duration::from_secs(5), ws.next())
                .await
                .unwrap()
            {
                Some(Ok(Message::Close(Some(f)))) => return Some(u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    });
    waiter.join().unwrap();
    assert_eq!(code, Some(1001));
    assert!(srv.terminate_wait(10).success());
}
