//! Several `amber serve --cluster` processes sharing one S3 bucket (moto
//! in CI), each under its own prefix, with their stderr captured to files
//! that are printed when the test fails.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::server::{request, Reply, ServeOpts, Server};

/// Header naming the incarnation whose runtime served an object request.
pub const HOST_HEADER: &str = "x-amber-host";

/// The bucket URL of `AMBER_TEST_S3_URL` with a fresh prefix for `tag`
/// appended to its path, or `None` (after saying so) when the variable is
/// unset. Panics when it is unset but `AMBER_REQUIRE_S3` is set.
pub fn s3_url(tag: &str) -> Option<String> {
    let Ok(url) = std::env::var("AMBER_TEST_S3_URL") else {
        assert!(
            std::env::var("AMBER_REQUIRE_S3").is_err(),
            "AMBER_REQUIRE_S3 is set but AMBER_TEST_S3_URL is not"
        );
        eprintln!("AMBER_TEST_S3_URL unset: skipping the cluster test {tag}");
        return None;
    };
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let seq = N.fetch_add(1, Ordering::Relaxed);
    let (base, query) = url.split_once('?').unwrap_or((&url, ""));
    let pid = std::process::id();
    let mut u = format!(
        "{}/cluster-{tag}-{pid}-{nanos}-{seq}",
        base.trim_end_matches('/')
    );
    if !query.is_empty() {
        u.push('?');
        u.push_str(query);
    }
    Some(u)
}

/// Cluster tests start several processes and measure takeover times on a
/// small machine: they run one at a time.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Host {
    /// The `--host` name; incarnations are `NAME-<8 hex>`.
    pub name: String,
    /// `None` once killed and reaped.
    pub server: Option<Server>,
    pub addr: SocketAddr,
    pub pid: u32,
    pub log: PathBuf,
}

pub struct Cluster {
    pub hosts: Vec<Host>,
    pub bucket: String,
    pub ttl: Duration,
    dir: Option<tempfile::TempDir>,
}

impl Cluster {
    /// Starts `n` hosts `h0..h{n-1}` on one fresh bucket prefix, each with
    /// its own data directory, `--cluster --lease-ttl-ms ttl_ms`. `None`
    /// when no S3 server is configured (see [`s3_url`]).
    pub fn start(tag: &str, n: usize, ttl_ms: u64) -> Option<Cluster> {
        let bucket = s3_url(tag)?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("amber-cluster-{tag}-"))
            .tempdir()
            .unwrap();
        eprintln!("[{tag}] bucket {bucket}");
        eprintln!("[{tag}] data and logs in {}", dir.path().display());
        let mut c = Cluster {
            hosts: Vec::new(),
            bucket,
            ttl: Duration::from_millis(ttl_ms),
            dir: Some(dir),
        };
        for i in 0..n {
            let server = c.spawn(i);
            c.hosts.push(Host {
                name: format!("h{i}"),
                addr: server.addr,
                pid: server.pid(),
                server: Some(server),
                log: c.log_path(i),
            });
        }
        Some(c)
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .as_ref()
            .unwrap()
            .path()
            .join(format!("h{i}.stderr.log"))
    }

    /// Starts host `i` on its data directory (the Cluster already owns
    /// the hosts started so far: a panic here kills them and prints their
    /// logs). The log file is appended to, so a restart continues it.
    fn spawn(&self, i: usize) -> Server {
        let name = format!("h{i}");
        let data = self.dir.as_ref().unwrap().path().join(&name);
        let rust_log =
            std::env::var("AMBER_TEST_CLUSTER_LOG").unwrap_or_else(|_| "info".to_string());
        let opts = ServeOpts {
            global_args: vec!["--bucket".into(), self.bucket.clone()],
            serve_args: vec![
                "--cluster".into(),
                "--host".into(),
                name,
                "--lease-ttl-ms".into(),
                self.ttl.as_millis().to_string(),
            ],
            env: vec![("RUST_LOG".into(), rust_log)],
            stderr_log: Some(self.log_path(i)),
        };
        Server::start_with(&data, &opts)
    }

    /// Starts host `i` again, on the same data directory (it must have
    /// been killed or stopped). It listens on a new port.
    pub fn restart(&mut self, i: usize) {
        assert!(self.hosts[i].server.is_none(), "h{i} is still running");
        let _ = std::fs::OpenOptions::new()
            .append(true)
            .open(self.log_path(i))
            .and_then(|mut f| {
                use std::io::Write;
                writeln!(f, "===== test harness: restarting h{i} =====")
            });
        let server = self.spawn(i);
        let h = &mut self.hosts[i];
        h.addr = server.addr;
        h.pid = server.pid();
        h.server = Some(server);
    }

    /// SIGTERMs host `i` and waits (at most `secs`) for it to exit.
    pub fn terminate(&mut self, i: usize, secs: u64) -> std::process::ExitStatus {
        let mut s = self.hosts[i].server.take().expect("host already gone");
        s.terminate(secs)
    }

    pub fn addr(&self, i: usize) -> SocketAddr {
        self.hosts[i].addr
    }

    /// Which host an incarnation id belongs to, by its `NAME-` prefix.
    pub fn host_of(&self, incarnation: &str) -> Option<usize> {
        self.hosts
            .iter()
            .position(|h| incarnation.starts_with(&format!("{}-", h.name)))
    }

    /// SIGKILLs host `i` and reaps it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut s) = self.hosts[i].server.take() {
            let _ = s.child.kill();
            let _ = s.child.wait();
        }
    }

    /// `kill -SIG` to host `i` ("STOP", "CONT", ...).
    pub fn signal(&self, i: usize, sig: &str) {
        self.hosts[i]
            .server
            .as_ref()
            .expect("host already killed")
            .signal(sig);
    }

    /// Prints the last `lines` lines of every host's stderr.
    pub fn print_logs(&self, lines: usize) {
        for h in &self.hosts {
            let text = std::fs::read_to_string(&h.log).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            let from = all.len().saturating_sub(lines);
            eprintln!(
                "----- {} (pid {}, {}) stderr: last {} of {} lines, full log {} -----",
                h.name,
                h.pid,
                h.addr,
                all.len() - from,
                all.len(),
                h.log.display()
            );
            for l in &all[from..] {
                eprintln!("{l}");
            }
        }
        eprintln!("----- end of host logs -----");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // SIGKILL ends stopped processes too; reap them all first.
        for i in 0..self.hosts.len() {
            self.kill(i);
        }
        let keep = std::env::var_os("AMBER_TEST_KEEP_CLUSTER").is_some();
        if keep && !std::thread::panicking() {
            if let Some(d) = self.dir.take() {
                eprintln!("AMBER_TEST_KEEP_CLUSTER: kept {}", d.keep().display());
            }
        }
        if std::thread::panicking() {
            let lines = std::env::var("AMBER_TEST_CLUSTER_LOG_LINES")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(200);
            self.print_logs(lines);
            // Keep the data directories and full logs for a post-mortem.
            if let Some(d) = self.dir.take() {
                eprintln!("kept {} for inspection", d.keep().display());
            }
        }
    }
}

/// One request and what came of it.
#[derive(Clone, Debug)]
pub struct Attempt {
    pub method: &'static str,
    pub path: String,
    pub body: String,
    /// Which host the request was sent to.
    pub via: usize,
    pub sent: Instant,
    pub done: Instant,
    pub reply: Result<Reply, String>,
}

impl Attempt {
    pub fn status(&self) -> Option<u16> {
        self.reply.as_ref().ok().map(|r| r.status)
    }

    pub fn ok(&self) -> bool {
        self.status() == Some(200)
    }

    /// The `x-amber-host` of the reply, if any.
    pub fn served_by(&self) -> Option<&str> {
        self.reply.as_ref().ok().and_then(|r| r.header(HOST_HEADER))
    }

    pub fn describe(&self, t0: Instant) -> String {
        let outcome = match &self.reply {
            Ok(r) => format!(
                "{} {}={:?} body={:?}",
                r.status,
                HOST_HEADER,
                r.header(HOST_HEADER),
                truncate(&r.text(), 120)
            ),
            Err(e) => format!("error: {e}"),
        };
        format!(
            "{} {} via h{} sent +{:.3}s done +{:.3}s: {outcome}",
            self.method,
            self.path,
            self.via,
            secs_since(t0, self.sent),
            secs_since(t0, self.done),
        )
    }
}

/// Sends one request to host `via` and records it.
pub fn attempt(
    addr: SocketAddr,
    via: usize,
    method: &'static str,
    path: &str,
    body: &str,
    timeout: Duration,
) -> Attempt {
    let sent = Instant::now();
    let reply = request(addr, method, path, body.as_bytes(), timeout).map_err(|e| e.to_string());
    Attempt {
        method,
        path: path.to_owned(),
        body: body.to_owned(),
        via,
        sent,
        done: Instant::now(),
        reply,
    }
}

/// Seconds from `t0` to `t`, negative when `t` is earlier.
pub fn secs_since(t0: Instant, t: Instant) -> f64 {
    if t >= t0 {
        (t - t0).as_secs_f64()
    } else {
        -(t0 - t).as_secs_f64()
    }
}

pub fn truncate(s: &str, n: usize) -> String {
    if s.len() <= n {
        s.to_owned()
    } else {
        let mut end = n;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    }
}

/// Repeats `GET path` on `addr` until a 200 (retrying 503s and errors)
/// for at most `within`; returns the 200, or panics with the last outcome.
pub fn get_until_ok(addr: SocketAddr, via: usize, path: &str, within: Duration) -> Reply {
    let deadline = Instant::now() + within;
    loop {
        let a = attempt(addr, via, "GET", path, "", Duration::from_secs(10));
        if let Ok(r) = &a.reply {
            if r.status == 200 {
                return r.clone();
            }
        }
        assert!(
            Instant::now() < deadline,
            "GET {path} via h{via}: no 200 within {within:?}; last: {}",
            a.describe(a.sent)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The whole of a `kv` object, read with `GET /kv/{name}` through host
/// `via` (retrying until a 200); returns the pairs and the reply.
pub fn read_kv(
    addr: SocketAddr,
    via: usize,
    name: &str,
    within: Duration,
) -> (std::collections::BTreeMap<String, String>, Reply) {
    let r = get_until_ok(addr, via, &format!("/kv/{name}"), within);
    let rows: Vec<(String, String)> = serde_json::from_slice(&r.body).unwrap_or_else(|e| {
        panic!(
            "GET /kv/{name} via h{via}: not JSON pairs ({e}): {:?}",
            r.text()
        )
    });
    let n = rows.len();
    let map: std::collections::BTreeMap<_, _> = rows.into_iter().collect();
    assert_eq!(map.len(), n, "GET /kv/{name} listed a key twice");
    (map, r)
}
