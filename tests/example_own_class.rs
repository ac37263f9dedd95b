//! `examples/own_class.rs` end to end, as a separate process: a user
//! class (`notes`) served by `amber::server` next to the built-in classes.
//! Its notes survive a graceful restart and a SIGKILL on the same data
//! directory, its alarm deletes expired notes (also across a restart),
//! and the built-in `counter` and `kv` still answer beside it.
#![cfg(unix)]

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::server::{request, Reply};

/// How long the example may take to print its address, or to exit.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long each HTTP request may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The example's binary. `cargo test --test example_own_class` builds only
/// this test, not the examples, so build it here with the profile and
/// features of this test (once per test binary; a no-op when up to date),
/// and take its path from cargo's JSON messages.
fn example_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // This test runs from target/<profile dir>/deps/.
        let exe = std::env::current_exe().expect("current_exe");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .and_then(Path::file_name)
            .and_then(|n| n.to_str())
            .expect("test binary under target/<profile>/deps");
        let profile = if profile_dir == "debug" {
            "dev"
        } else {
            profile_dir
        };
        let mut features = Vec::new();
        if cfg!(feature = "serde") {
            features.push("serde");
        }
        if cfg!(feature = "capi") {
            features.push("capi");
        }
        let out = Command::new(env!("CARGO"))
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["build", "--example", "own_class", "--profile", profile])
            .args(["--message-format", "json-render-diagnostics"])
            .args(["--features", &features.join(",")])
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build --example own_class");
        assert!(
            out.status.success(),
            "cargo build --example own_class failed: {}",
            out.status
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "own_class")
            .find_map(|m| m["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no executable for example own_class")
    })
}

/// A running `own_class` example. Dropping it kills the process, so a
/// failing test leaves no server behind.
struct Example {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Example {
    /// Starts the example on `data` and a free port; returns once it
    /// printed its address.
    fn start(data: &Path) -> Example {
        let mut child = Command::new(example_binary())
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn examples/own_class");
        // Both pipes are drained for the process' whole life, so it never
        // blocks writing to them; stderr is kept for failure messages.
        let stderr = Arc::new(Mutex::new(String::new()));
        let (err_pipe, log) = (child.stderr.take().unwrap(), stderr.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(|l| l.ok()) {
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let (tx, rx) = mpsc::channel::<SocketAddr>();
        let out_pipe = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out_pipe).lines().map_while(|l| l.ok()) {
                let addr = line.split("on http://").nth(1).and_then(|a| a.parse().ok());
                if let Some(addr) = addr {
                    let _ = tx.send(addr);
                }
            }
        });
        let mut ex = Example {
            child,
            addr: "0.0.0.0:0".parse().unwrap(),
            stderr,
        };
        match rx.recv_timeout(PROCESS_TIMEOUT) {
            Ok(addr) => ex.addr = addr,
            Err(_) => panic!(
                "own_class printed no address within {PROCESS_TIMEOUT:?} (exit: {:?}); stderr:\n{}",
                ex.child.try_wait().ok().flatten(),
                ex.stderr()
            ),
        }
        ex
    }

    fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    fn req(&self, method: &str, path: &str, body: &str) -> Reply {
        request(self.addr, method, path, body.as_bytes(), HTTP_TIMEOUT).unwrap_or_else(|e| {
            panic!("{method} {path}: {e}; own_class stderr:\n{}", self.stderr())
        })
    }

    fn get(&self, path: &str) -> (u16, String) {
        let r = self.req("GET", path, "");
        (r.status, r.text())
    }

    fn json(&self, path: &str) -> Value {
        let r = self.req("GET", path, "");
        assert_eq!(r.status, 200, "GET {path}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("GET {path}: {e}: {}", r.text()))
    }

    /// Adds a note and returns its id.
    fn add_note(&self, path: &str, text: &str) -> i64 {
        let r = self.req("POST", path, text);
        assert_eq!(r.status, 201, "POST {path}: {}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        v["id"].as_i64().unwrap_or_else(|| panic!("no id in {v}"))
    }

    /// Sends `sig` (e.g. "TERM", "KILL") and waits for the exit.
    fn stop(mut self, sig: &str) -> ExitStatus {
        let status = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig} {}", self.child.id());
        let deadline = Instant::now() + PROCESS_TIMEOUT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "own_class did not exit within {PROCESS_TIMEOUT:?} of SIG{sig}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The texts of a notebook's notes, in order.
fn texts(notes: &Value) -> Vec<String> {
    notes
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {notes}"))
        .iter()
        .map(|n| n["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[test]
fn notes_survive_restarts_next_to_the_builtin_classes() {
    let dir = tempfile::tempdir().unwrap();
    let ex = Example::start(dir.path());

    // The user class is listed with the built-in ones.
    let (status, index) = ex.get("/");
    assert_eq!(status, 200);
    for class in ["/notes/", "/counter/", "/chat/", "/kv/"] {
        assert!(
            index.contains(class),
            "{class} missing from index:\n{index}"
        );
    }

    assert_eq!(ex.add_note("/notes/plan", "buy milk"), 1);
    assert_eq!(ex.add_note("/notes/plan", "ring Bob"), 2);
    assert_eq!(ex.add_note("/notes/plan", "water plants"), 3);
    assert_eq!(
        ex.add_note("/notes/other-doc", "a different notebook"),
        1,
        "each document is its own object with its own table"
    );
    assert_eq!(ex.get("/notes/plan/2"), (200, "ring Bob".into()));
    assert_eq!(ex.req("DELETE", "/notes/plan/1", "").status, 200);
    assert_eq!(ex.req("DELETE", "/notes/plan/1", "").status, 404);
    assert_eq!(ex.get("/notes/plan/1").0, 404);
    assert_eq!(ex.get("/notes/plan/not-an-id").0, 404);
    let notes = ex.json("/notes/plan");
    assert_eq!(texts(&notes), ["ring Bob", "water plants"]);
    assert!(notes[0]["expires_ms"].is_null());

    // Input the class refuses, and an error the runtime maps (400).
    assert_eq!(ex.req("POST", "/notes/plan", "").status, 400);
    assert_eq!(ex.req("POST", "/notes/plan?ttl=soon", "x").status, 400);
    assert_eq!(ex.req("PUT", "/notes/plan/2", "x").status, 405);

    // The built-in classes answer beside it.
    assert_eq!(
        ex.req("POST", "/counter/c1/increment", "").text(),
        "1".to_string()
    );
    assert_eq!(ex.req("POST", "/counter/c1/increment", "").text(), "2");
    assert_eq!(ex.req("PUT", "/kv/k1/colour", "green").status, 200);

    // Graceful restart: SIGTERM, a clean exit, same data directory.
    let st = ex.stop("TERM");
    assert!(st.success(), "own_class exited with {st} on SIGTERM");
    let ex = Example::start(dir.path());
    assert_eq!(texts(&ex.json("/notes/plan")), ["ring Bob", "water plants"]);
    assert_eq!(
        texts(&ex.json("/notes/other-doc")),
        ["a different notebook"]
    );
    assert_eq!(
        ex.add_note("/notes/plan", "after the restart"),
        4,
        "ids go on from the stored table"
    );
    assert_eq!(ex.get("/counter/c1"), (200, "2".into()));
    assert_eq!(ex.get("/kv/k1/colour"), (200, "green".into()));

    // Crash: a 201 is sent only once the note is durable, so a SIGKILL
    // right after it loses nothing.
    assert_eq!(ex.add_note("/notes/plan", "acknowledged, then killed"), 5);
    ex.stop("KILL");
    let ex = Example::start(dir.path());
    assert_eq!(
        texts(&ex.json("/notes/plan")),
        [
            "ring Bob",
            "water plants",
            "after the restart",
            "acknowledged, then killed"
        ]
    );
    assert_eq!(ex.json("/notes/plan/stats")["notes"], 4);
}

#[test]
fn the_alarm_deletes_expired_notes_even_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ex = Example::start(dir.path());
    ex.add_note("/notes/tmp", "stays");
    let r = ex.req("POST", "/notes/tmp?ttl=1", "gone in a second");
    assert_eq!(r.status, 201, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert!(v["expires_ms"].as_i64().is_some(), "{v}");

    // Stop before (or about when) it expires: the alarm is stored with the
    // note, and the restarted process indexes and fires it.
    assert!(ex.stop("TERM").success());
    let ex = Example::start(dir.path());
    let deadline = Instant::now() + Duration::from_secs(30);
    let expired = loop {
        if ex.json("/notes/tmp/stats")["expired"] == 1 {
            break true;
        }
        if Instant::now() >= deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        expired,
        "the note did not expire within 30 s: {}; stderr:\n{}",
        ex.json("/notes/tmp/stats"),
        ex.stderr()
    );
    assert_eq!(texts(&ex.json("/notes/tmp")), ["stays"]);
    assert_eq!(ex.json("/notes/tmp/stats")["notes"], 1);
}
