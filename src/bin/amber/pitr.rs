//! `amber bookmark | restore | history | verify | export`: point-in-time
//! recovery from the command line.

use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amber::pitr::{Bookmark, RestoreOptions, RestoreTarget};
use amber::{Error, ErrorKind, Store};
use clap::Subcommand;

use crate::output::io;

#[derive(Subcommand)]
pub(crate) enum PitrCmd {
    /// Print the object's current bookmark, or the one in force at TIME.
    Bookmark {
        object: String,
        /// RFC 3339 (`2026-11-24T10:00:00Z`), relative (`-10m`, `-2h`,
        /// `-1d`), `@<ms since epoch>`, or `now`.
        #[arg(long, allow_hyphen_values = true)]
        at: Option<String>,
    },
    /// Rebuild an object at a TIME or BOOKMARK, from the bucket.
    Restore {
        object: String,
        /// A bookmark, `latest`, or a TIME as for `bookmark --at`.
        #[arg(long, allow_hyphen_values = true)]
        to: String,
        /// Write the restored database to this new file.
        #[arg(long, conflicts_with = "in_place")]
        out: Option<PathBuf>,
        /// Restore the live object itself (a new timeline; prints the
        /// bookmark that undoes it).
        #[arg(long)]
        in_place: bool,
        /// On damaged history, restore up to the last consistent commit
        /// instead of failing.
        #[arg(long)]
        partial: bool,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Snapshots, segment ranges and the restorable range of an object.
    History { object: String },
    /// Check every CRC and the continuity of each object's log.
    Verify { object: Option<String> },
    /// Probe a bucket's conditional writes and ranged reads; exits non-zero
    /// if the store misbehaves.
    Diagnose,
    /// Write the object's latest state in the bucket to a plain SQLite file.
    Export {
        object: String,
        #[arg(long)]
        out: PathBuf,
    },
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Parses a TIME argument to ms since the Unix epoch.
pub(crate) fn parse_time(s: &str) -> Result<u64, Error> {
    let bad = |why: &str| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("`{s}` is not a time ({why}); use RFC 3339, -10m, @<ms> or now"),
        )
    };
    let s = s.trim();
    if s == "now" {
        return Ok(now_ms());
    }
    if let Some(rel) = s.strip_prefix('-') {
        let d = humantime::parse_duration(rel).map_err(|_| bad("bad relative time"))?;
        return now_ms()
            .checked_sub(d.as_millis() as u64)
            .ok_or_else(|| bad("before 1970"));
    }
    if let Some(ms) = s.strip_prefix('@') {
        return ms.parse().map_err(|_| bad("bad milliseconds"));
    }
    let t = humantime::parse_rfc3339_weak(s).map_err(|_| bad("bad RFC 3339"))?;
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .map_err(|_| bad("before 1970"))
}

fn fmt_ms(ms: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

fn target(s: &str) -> Result<RestoreTarget, Error> {
    if let Ok(b) = s.parse::<Bookmark>() {
        return Ok(RestoreTarget::Bookmark(b));
    }
    if s == "latest" {
        return Ok(RestoreTarget::Latest);
    }
    parse_time(s).map(RestoreTarget::Time)
}

pub(crate) fn run(store: &Store, cmd: PitrCmd, out: &mut impl Write) -> Result<(), Error> {
    match cmd {
        PitrCmd::Bookmark { object, at } => {
            let b = match at {
                Some(t) => store.bookmark_for_time(&object, parse_time(&t)?)?,
                None => store.open_object(&object)?.current_bookmark(),
            };
            writeln!(out, "{b}").map_err(io)?;
        }
        PitrCmd::Restore {
            object,
            to,
            out: file,
            in_place,
            partial,
            quiet,
        } => {
            let t = target(&to)?;
            if in_place {
                let b = match t {
                    RestoreTarget::Bookmark(b) => b,
                    RestoreTarget::Time(ms) => store.bookmark_for_time(&object, ms)?,
                    RestoreTarget::Latest => store.history(&object)?.latest().ok_or_else(|| {
                        Error::new(ErrorKind::InvalidInput, "nothing in the bucket")
                    })?,
                };
                let mut o = store.open_object(&object)?;
                let undo = o.restore_on_next_open(b)?;
                drop(o);
                // Opening runs the restore.
                let o = store.open_object(&object)?;
                writeln!(
                    out,
                    "restored {object} to {b}; now at {}",
                    o.current_bookmark()
                )
                .map_err(io)?;
                writeln!(
                    out,
                    "undo with: amber restore {object} --to {undo} --in-place"
                )
                .map_err(io)?;
                return Ok(());
            }
            let file = file.ok_or_else(|| {
                Error::new(ErrorKind::InvalidInput, "give --out FILE or --in-place")
            })?;
            let mut opts = RestoreOptions {
                allow_partial: partial,
                prefetch: 8,
                ..Default::default()
            };
            let bar = (!quiet).then(|| {
                let b = indicatif::ProgressBar::new(0);
                b.set_style(
                    indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                b
            });
            if let Some(b) = &bar {
                let b = b.clone();
                opts.progress = Some(std::sync::Arc::new(move |p| {
                    b.set_length(p.bytes_total);
                    b.set_position(p.bytes_fetched);
                    b.set_message(format!("commit {}/{}", p.applied_seq, p.target_seq));
                }));
            }
            let rep = store.restore(&object, t, &file, opts)?;
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            writeln!(
                out,
                "restored {object} to {} ({}) into {}{}",
                rep.bookmark,
                fmt_ms(rep.commit_time_ms),
                file.display(),
                if rep.partial {
                    format!("; PARTIAL: {}", rep.damage.unwrap_or_default())
                } else {
                    String::new()
                }
            )
            .map_err(io)?;
        }
        PitrCmd::History { object } => {
            let h = store.history(&object)?;
            writeln!(out, "object {object} ({})", h.object).map_err(io)?;
            for e in &h.epochs {
                let parent = e
                    .manifest
                    .and_then(|m| m.parent)
                    .map(|p| format!(", restored from {p}"))
                    .unwrap_or_default();
                let started = e.manifest.map(|m| fmt_ms(m.started_ms)).unwrap_or_default();
                writeln!(out, "epoch {} (started {started}{parent})", e.epoch).map_err(io)?;
                for s in &e.snapshots {
                    writeln!(out, "  snapshot  commit {:>8}  {:>10} bytes", s.seq, s.size)
                        .map_err(io)?;
                }
                for s in &e.segments {
                    writeln!(
                        out,
                        "  segment   commits {:>8}..={:<8} {:>10} bytes",
                        s.first, s.last, s.size
                    )
                    .map_err(io)?;
                }
                if let (Some(a), Some(b)) = (e.first_seq(), e.last_seq()) {
                    writeln!(
                        out,
                        "  restorable: {} ..= {}",
                        Bookmark::new(e.epoch, a),
                        Bookmark::new(e.epoch, b)
                    )
                    .map_err(io)?;
                }
            }
        }
        PitrCmd::Verify { object } => {
            let names: Vec<String> = match object {
                Some(o) => vec![o],
                None => store.list_objects()?.into_iter().map(|o| o.name).collect(),
            };
            let mut bad = 0;
            for n in names {
                let r = store.verify(&n)?;
                for e in &r.epochs {
                    let mut range = e
                        .restorable
                        .map(|(a, b)| format!("{a} ..= {b}"))
                        .unwrap_or_else(|| "nothing".into());
                    for (a, b) in &e.bridged {
                        // Only as part of a later snapshot's state.
                        range.push_str(&format!(" (commits {a}..={b} bridged by a snapshot)"));
                    }
                    writeln!(
                        out,
                        "{n}: epoch {}: {} snapshot(s), {} segment(s), {} record(s), restorable {range}: {}",
                        e.epoch,
                        e.snapshots,
                        e.segments,
                        e.records,
                        if e.problems.is_empty() { "ok".to_string() } else { e.problems.join("; ") }
                    )
                    .map_err(io)?;
                }
                if !r.is_ok() {
                    bad += 1;
                }
            }
            if bad > 0 {
                return Err(Error::new(
                    ErrorKind::Corruption,
                    format!("{bad} object(s) failed verification"),
                ));
            }
        }
        PitrCmd::Diagnose => {
            let d = store.diagnose()?;
            for p in &d.probes {
                let verdict = if p.ok {
                    "ok"
                } else if p.unsupported {
                    "unsupported"
                } else {
                    "FAULTY"
                };
                writeln!(out, "{:<14} {:<12} {}", p.name, verdict, p.detail).map_err(io)?;
            }
            if !d.is_sound() {
                return Err(Error::new(
                    ErrorKind::Corruption,
                    "the bucket ignores conditional writes: amber cannot run safely on it",
                ));
            }
            writeln!(
                out,
                "{}",
                if d.supports_everything() {
                    "bucket is sound, with compare-and-swap (ready for scale-out)"
                } else {
                    "bucket is sound for a single host (no compare-and-swap)"
                }
            )
            .map_err(io)?;
        }
        PitrCmd::Export { object, out: file } => {
            let rep = store.restore(
                &object,
                RestoreTarget::Latest,
                &file,
                RestoreOptions::default(),
            )?;
            amber::sqlite::Connection::open(&file, "\u{1}", vec!["journal_mode".into()])
                .and_then(|c| {
                    let (st, _) = c.prepare_next("PRAGMA journal_mode = DELETE", false)?;
                    if let Some(mut st) = st {
                        st.run()?;
                    }
                    Ok(())
                })
                .map_err(|e| {
                    Error::new(ErrorKind::Io, format!("finishing {}: {e}", file.display()))
                })?;
            writeln!(
                out,
                "exported {object} at {} to {}",
                rep.bookmark,
                file.display()
            )
            .map_err(io)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        assert_eq!(parse_time("@1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        let rel = parse_time("-10m").unwrap();
        assert!(now_ms() - rel >= 600_000 && now_ms() - rel < 700_000);
        for bad in ["", "yesterday", "-", "-10x", "@x", "2023-13-45T00:00:00Z"] {
            assert_eq!(
                parse_time(bad).unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad}"
            );
        }
    }
}
