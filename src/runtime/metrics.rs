//! Counters and histograms for `/metrics`, in Prometheus' text format.
//! Plain atomics: recording is a relaxed add on the hot path.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 14] = [
    50,
    100,
    250,
    500,
    1_000,
    2_500,
    5_000,
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    1_000_000,
    u64::MAX,
];

/// A fixed-bucket latency histogram.
#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; 14],
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        let i = BUCKETS_US.iter().position(|b| us <= *b).unwrap_or(13);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut acc = 0;
        for (b, c) in BUCKETS_US.iter().zip(&self.counts) {
            acc += c.load(Ordering::Relaxed);
            let le = if *b == u64::MAX {
                "+Inf".to_owned()
            } else {
                format!("{}", *b as f64 / 1e6)
            };
            let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {acc}");
        }
        let sum = self.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {acc}");
    }
}

/// The runtime's metrics.
#[derive(Default)]
pub struct Metrics {
    pub turns: AtomicU64,
    pub commits: AtomicU64,
    pub activations: AtomicU64,
    pub evictions: AtomicU64,
    pub resets: AtomicU64,
    pub overloaded: AtomicU64,
    pub alarms_fired: AtomicU64,
    pub alarms_failed: AtomicU64,
    pub auto_responses: AtomicU64,
    /// From the end of a writing turn to its ticket resolving.
    pub confirm_latency: Histogram,
    /// Opening an object's storage and starting its instance.
    pub wake_latency: Histogram,
}

impl Metrics {
    pub(crate) fn observe_confirm(&self, d: Duration) {
        self.confirm_latency.observe(d);
    }

    pub(crate) fn observe_wake(&self, d: Duration) {
        self.wake_latency.observe(d);
    }

    pub(crate) fn render(&self, live_objects: usize, journal: crate::JournalStats) -> String {
        let mut out = String::new();
        let counters: [(&str, &AtomicU64, &str); 9] = [
            ("amber_turns_total", &self.turns, "Events run as turns."),
            (
                "amber_commits_total",
                &self.commits,
                "Turns that committed writes.",
            ),
            (
                "amber_activations_total",
                &self.activations,
                "Instances started (first use or wake).",
            ),
            (
                "amber_evictions_total",
                &self.evictions,
                "Instances closed for idleness or memory.",
            ),
            (
                "amber_resets_total",
                &self.resets,
                "Instances reset after a failed commit or panic.",
            ),
            (
                "amber_overloaded_total",
                &self.overloaded,
                "Events refused because a mailbox was full.",
            ),
            (
                "amber_alarms_fired_total",
                &self.alarms_fired,
                "Alarm handler runs.",
            ),
            (
                "amber_alarms_failed_total",
                &self.alarms_failed,
                "Alarm handler failures.",
            ),
            (
                "amber_ws_auto_responses_total",
                &self.auto_responses,
                "WebSocket auto-responses sent without waking.",
            ),
        ];
        for (name, c, help) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                c.load(Ordering::Relaxed)
            );
        }
        // The store journal's sharing: fsyncs against the commits they made
        // durable.
        for (name, v, help) in [
            (
                "amber_fsyncs_total",
                journal.fsyncs,
                "fsyncs amber issued for the store journal (SQLite's checkpoints not counted).",
            ),
            (
                "amber_journal_commits_total",
                journal.commits,
                "Commits made durable by the store journal's fsyncs.",
            ),
            (
                "amber_journal_bytes_total",
                journal.bytes,
                "Record bytes appended to the store journal.",
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP amber_open_objects Live instances.\n# TYPE amber_open_objects gauge\namber_open_objects {live_objects}"
        );
        self.confirm_latency.render(
            &mut out,
            "amber_confirm_seconds",
            "Time from a writing turn's end to its commit being durable.",
        );
        self.wake_latency.render(
            &mut out,
            "amber_wake_seconds",
            "Time to open an object's storage and start its instance.",
        );
        out
    }
}
