//! A spawned `amber serve` process and a tiny HTTP/1.1 client.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
}

/// Extra command line and environment for [`Server::start_with`].
#[derive(Clone, Debug, Default)]
pub struct ServeOpts {
    /// Arguments before `serve` (global ones such as `--bucket URL`).
    pub global_args: Vec<String>,
    /// Arguments after `serve --listen 127.0.0.1:0`.
    pub serve_args: Vec<String>,
    /// Environment variables, applied after the default `RUST_LOG=warn`
    /// (so `RUST_LOG` can be overridden here).
    pub env: Vec<(String, String)>,
    /// When set, every line the server writes to stderr is appended here.
    pub stderr_log: Option<PathBuf>,
}

/// How long a server may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

impl Server {
    /// Starts `amber --data DIR serve` on a free port and waits until it
    /// listens.
    pub fn start(data: &Path) -> Server {
        Server::start_with(data, &ServeOpts::default())
    }

    /// Starts `amber --data DIR GLOBAL.. serve --listen 127.0.0.1:0 SERVE..`
    /// with `opts.env`, and waits until it listens. Panics with what the
    /// server printed when it exits (or stays silent for 30 s) first.
    pub fn start_with(data: &Path, opts: &ServeOpts) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_amber"));
        cmd.arg("--data")
            .arg(data)
            .args(&opts.global_args)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(&opts.serve_args)
            .env("RUST_LOG", "warn");
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn amber serve");
        let stderr = child.stderr.take().unwrap();
        let mut log = opts.stderr_log.as_ref().map(|p| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .unwrap_or_else(|e| panic!("open {}: {e}", p.display()))
        });
        // One thread reads stderr for the server's whole life: it reports
        // the listening address, copies lines to the log, and keeps the
        // pipe drained so the server never blocks on it.
        let (tx, rx) = mpsc::channel::<Result<SocketAddr, String>>();
        std::thread::spawn(move || {
            let mut seen = String::new();
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(f) = log.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if let Some(t) = tx.as_ref() {
                    seen.push_str(&line);
                    seen.push('\n');
                    if let Some(rest) = line.split("on http://").nth(1) {
                        if let Ok(addr) = rest.split_whitespace().next().unwrap_or("").parse() {
                            let _ = t.send(Ok(addr));
                            tx = None;
                        }
                    }
                }
            }
            if let Some(t) = tx {
                let _ = t.send(Err(seen));
            }
        });
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(addr)) => addr,
            Ok(Err(seen)) => {
                let st = child.wait().ok();
                panic!("amber serve exited ({st:?}) before listening; stderr:\n{seen}");
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("amber serve did not listen within {START_TIMEOUT:?}");
            }
        };
        Server { child, addr }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `kill -SIG` (e.g. "STOP", "CONT", "KILL") to the server.
    pub fn signal(&self, sig: &str) {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{sig} {}", self.child.id());
    }

    /// Sends SIGTERM and waits for the exit, at most `secs`.
    pub fn terminate(&mut self, secs: u64) -> ExitStatus {
        self.signal("TERM");
        self.terminate_wait(secs)
    }

    /// Waits for an exit already asked for.
    pub fn terminate_wait(&mut self, secs: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "server did not exit in {secs} s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        http(self.addr, "GET", path, b"").unwrap()
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        http(self.addr, "POST", path, body.as_bytes()).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped process.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A whole response: status, headers (names lower-cased, in order) and
/// the body (de-chunked).
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on its own connection (`Connection: close`).
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let r = request(addr, method, path, body, Duration::from_secs(10))?;
    let text = r.text();
    Ok((r.status, text))
}

/// One request on its own connection (`Connection: close`), waiting at
/// most `timeout` for each connect, write and read.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> std::io::Result<Reply> {
    let bad = || std::io::Error::other(format!("bad response: {:?}", String::from_utf8_lossy(raw)));
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, rest) = match split {
        Some(i) => (&raw[..i], &raw[i + 4..]),
        None => (raw, &[][..]),
    };
    let head = String::from_utf8_lossy(head);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    let chunked =
        get("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest).ok_or_else(bad)?
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest[..n.min(rest.len())].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&b[..eol]).ok()?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        b = &b[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}
