#![allow(dead_code)]
//! The one child-process harness of the crash tests: a test re-runs its
//! own test binary as a child that runs only one other test (its *role*),
//! selected by `--exact` and told what to do through an environment
//! variable. The child reports progress as lines on stdout; the parent
//! reads them as they come, may kill it with SIGKILL at any moment, and
//! gets every line the child flushed before it died.
//!
//! ```ignore
//! #[path = "support/child.rs"]
//! mod child;
//!
//! #[test]
//! fn writer() {
//!     let Some(dir) = child::role("MY_CHILD") else { return };
//!     // ... work, printing one line per acknowledged step
//! }
//!
//! #[test]
//! fn parent() {
//!     if child::in_child("MY_CHILD") { return; }
//!     let c = child::Command::test("writer").env("MY_CHILD", dir).spawn();
//!     std::thread::sleep(..);
//!     let out = c.kill_9();
//!     let acked: Vec<u64> = out.numbers();
//! }
//! ```
//!
//! The child's stderr is collected too (`Output::stderr`), or passed
//! through as it comes when `AMBER_CHILD_DEBUG` is set (`AMBER_CRASH_DEBUG`,
//! its older name, works too).
//!
//! Use from a test file with `#[path = "support/child.rs"] mod child;`, so
//! the rest of `tests/support` is not compiled into it.

use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// In a child, the value of its role variable `var`; `None` in the parent
/// (and in every other test of the child's binary).
pub fn role(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

/// Whether this process is a child with role variable `var`: a parent test
/// returns at once then.
pub fn in_child(var: &str) -> bool {
    std::env::var_os(var).is_some()
}

fn debug() -> bool {
    std::env::var_os("AMBER_CHILD_DEBUG").is_some()
        || std::env::var_os("AMBER_CRASH_DEBUG").is_some()
}

/// How to start a child: the current test binary, running one test.
pub struct Command {
    test: String,
    env: Vec<(String, OsString)>,
}

impl Command {
    /// Runs the test named exactly `name` and no other.
    pub fn test(name: &str) -> Command {
        Command {
            test: name.to_string(),
            env: Vec::new(),
        }
    }

    pub fn env(mut self, var: &str, value: impl Into<OsString>) -> Command {
        self.env.push((var.to_string(), value.into()));
        self
    }

    fn command(&self) -> std::process::Command {
        let mut c = std::process::Command::new(std::env::current_exe().unwrap());
        c.args(["--exact", &self.test, "--nocapture", "--test-threads=1"])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(if debug() {
                Stdio::inherit()
            } else {
                Stdio::piped()
            });
        c
    }

    /// Starts the child; its stdout and stderr are read on threads as
    /// they come.
    pub fn spawn(self) -> Child {
        let mut child = self.command().spawn().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let mut readers = vec![read_lines(child.stdout.take().unwrap(), lines.clone())];
        if let Some(err) = child.stderr.take() {
            readers.push(read_lines(err, stderr.clone()));
        }
        Child {
            child,
            lines,
            stderr,
            readers,
        }
    }

    /// Runs the child to its end.
    pub fn run(self) -> Output {
        self.spawn().wait()
    }
}

fn read_lines(from: impl Read + Send + 'static, into: Arc<Mutex<Vec<String>>>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            into.lock().unwrap().push(line);
        }
    })
}

/// A running child.
pub struct Child {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Empty once the child has been waited for.
    readers: Vec<JoinHandle<()>>,
}

/// What a child printed before it ended, and how it ended.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    /// Every line of its stdout, the test harness's own included.
    pub lines: Vec<String>,
    /// Every line of its stderr (none with `AMBER_CHILD_DEBUG`, which
    /// passes it through).
    pub stderr: Vec<String>,
}

impl Output {
    /// The lines that are a number: the child's progress reports.
    pub fn numbers(&self) -> Vec<u64> {
        self.lines
            .iter()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Child {
    /// The lines read so far.
    pub fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// SIGKILL: the child gets no chance to clean up. Returns what it had
    /// written to stdout by then.
    pub fn kill_9(mut self) -> Output {
        // `Child::kill` is SIGKILL on Unix.
        self.child.kill().unwrap();
        self.finish()
    }

    /// Waits for the child to exit on its own.
    pub fn wait(self) -> Output {
        self.finish()
    }

    fn finish(mut self) -> Output {
        let status = self.child.wait().unwrap();
        for r in std::mem::take(&mut self.readers) {
            r.join().unwrap();
        }
        let take = |v: &Mutex<Vec<String>>| std::mem::take(&mut *v.lock().unwrap());
        Output {
            status,
            lines: take(&self.lines),
            stderr: take(&self.stderr),
        }
    }
}

impl Drop for Child {
    /// A child left behind by a failing parent is killed, not leaked.
    fn drop(&mut self) {
        if !self.readers.is_empty() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
