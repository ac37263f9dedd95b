//! Hostile input through the HTTP host, WebSocket frames, and the PITR
//! commands of the CLI: every one gets a typed refusal (a 4xx, a closed
//! socket, or a non-zero exit with a message), the server stays up, and
//! data written before is intact.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::server::{http, Server};

fn cli(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_amber"))
        .arg("--data")
        .arg(data)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn http_routes_refuse_hostile_requests_and_stay_up() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path());
    assert_eq!(srv.post("/counter/keep/increment", "").0, 200);
    let long = "n".repeat(2000);
    let huge = vec![b'v'; 200 * 1024];
    let cases: Vec<(&str, String, Vec<u8>)> = vec![
        ("GET", "/nosuchclass/x".into(), vec![]),
        ("POST", format!("/counter/{long}/increment"), vec![]),
        ("POST", "/counter/x/nosuchaction".into(), vec![]),
        ("DELETE", "/counter/x".into(), vec![]),
        ("PUT", format!("/kv/x/{}", "k".repeat(3000)), b"v".to_vec()),
        ("PUT", "/kv/x/big".into(), huge),
        ("PUT", "/kv/x?alarm=not-a-number".into(), vec![]),
        ("GET", "/chat/x/ws".into(), vec![]),
    ];
    for (method, path, body) in &cases {
        let (status, text) = http(srv.addr, method, path, body).unwrap();
        assert!(
            (400..500).contains(&status),
            "{method} {}: {status} {text}",
            &path[..path.len().min(60)]
        );
    }
    // Path-like names are just names: they stay inside the store.
    for name in ["..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "a%00b", ".."] {
        let (status, _) =
            http(srv.addr, "POST", &format!("/counter/{name}/increment"), b"").unwrap();
        assert!(
            status == 200 || (400..500).contains(&status),
            "{name}: {status}"
        );
    }
    assert!(!Path::new("/etc/passwd.db").exists());
    // Malformed HTTP on a raw socket.
    for junk in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/9.9\r\n\r\n",
        b"\x00\x01\x02\x03",
        b"GET /counter/x HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(junk);
        let mut buf = [0u8; 256];
        let _ = s.read(&mut buf);
    }
    // Still serving, and nothing lost.
    let (status, body) = srv.get("/counter/keep");
    assert_eq!(status, 200);
    assert!(body.contains('1'), "{body}");
}

#[test]
fn truncated_websocket_frames_close_the_socket_not_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let srv = Server::start(dir.path());
    assert_eq!(srv.post("/counter/keep/increment", "").0, 200);
    let frames: [&[u8]; 4] = [
        b"\x81",                                     // header cut short
        b"\x81\xfe\x00",                             // extended length cut short
        b"\x81\xff\xff\xff\xff\xff\xff\xff\xff\xff", // absurd 64-bit length
        b"\x81\x85\x01\x02",                         // mask key cut short
    ];
    for frame in frames {
        let mut s = TcpStream::connect(srv.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let req = format!(
            "GET /chat/room/ws?name=eve HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            srv.addr
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut head = [0u8; 1024];
        let n = s.read(&mut head).unwrap();
        let head = String::from_utf8_lossy(&head[..n]);
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        let _ = s.write_all(frame);
        drop(s); // the peer vanishes mid-frame
    }
    let (status, body) = srv.get("/counter/keep");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains('1'));
    let (status, _) = srv.get("/chat/room");
    assert_eq!(status, 200);
}

#[test]
fn pitr_commands_refuse_bad_input_and_keep_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let ok = cli(data, &["kv", "put", "o", "keep", "kept"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let existing = data.join("exists.db");
    std::fs::write(&existing, b"do not overwrite").unwrap();
    let out = data.join("out.db");
    let out = out.to_str().unwrap();
    for args in [
        vec!["restore", "o", "--to", "garbage", "--out", out],
        vec![
            "restore",
            "o",
            "--to",
            "0000000000000000-0000000000000001-00000000",
            "--out",
            out,
        ],
        vec![
            "restore",
            "o",
            "--to",
            "0000000000000009-0000000000000001-a0b6f9ab",
            "--out",
            out,
        ],
        vec!["restore", "o", "--to", "-1000000d", "--out", out],
        vec![
            "restore",
            "o",
            "--to",
            "@99999999999999999999",
            "--out",
            out,
        ],
        vec!["restore", "o", "--to", "latest"],
        vec![
            "restore",
            "o",
            "--to",
            "latest",
            "--out",
            existing.to_str().unwrap(),
        ],
        vec!["restore", "never-written", "--to", "latest", "--out", out],
        vec!["bookmark", "o", "--at", "yesterday"],
        vec!["bookmark", "o", "--at", "1999-02-30T00:00:00Z"],
        vec!["--bucket", "ftp://x", "objects"],
        vec!["--bucket", "s3://", "history", "o"],
        vec!["--bucket", "file://relative", "verify"],
    ] {
        let r = cli(data, &args);
        let err = String::from_utf8_lossy(&r.stderr);
        assert!(!r.status.success(), "{args:?} succeeded");
        assert!(r.status.code().is_some(), "{args:?} died of a signal");
        assert!(
            !err.trim().is_empty() && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
    assert_eq!(std::fs::read(&existing).unwrap(), b"do not overwrite");
    let r = cli(data, &["kv", "get", "o", "keep"]);
    assert_eq!(String::from_utf8_lossy(&r.stdout).trim(), "kept");
    let r = cli(data, &["verify"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}
