//! The workload of `scripts/bench_vs_litestream.sh`: N small write
//! transactions (`INSERT INTO t VALUES (i, randomblob(100))`, one per turn)
//! on one object whose log ships to an S3-compatible bucket.
//!
//! Run: `cargo run --release --example pitr_workload -- local|remote N DATA_DIR BUCKET_URL [MARKER_URL]`
//!
//! - `local`: tickets wait for the local fsync (`DurabilityLevel::Local`);
//!   after the last commit it polls the bucket's history until the last
//!   commit is listed there (replication lag), then stays open and idle for
//!   10 s so the caller can count idle requests.
//! - `remote`: tickets wait until the commit is in the bucket
//!   (`DurabilityLevel::Remote`): confirmed-in-bucket throughput.
//!
//! With MARKER_URL (e.g. `http://127.0.0.1:9100`) it sends an unsigned
//! `GET /__marker__/<phase>` at each phase boundary, so the caller can split
//! the S3 server's request log into phases.
//!
//! Prints one line of `key=value` pairs.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use amber::{BucketConfig, Config, DurabilityLevel, Store, ValueRef};

fn marker(url: &Option<String>, phase: &str) {
    let Some(u) = url else { return };
    let hostport = u.trim_start_matches("http://").trim_end_matches('/');
    if let Ok(mut s) = std::net::TcpStream::connect(hostport) {
        let _ = write!(
            s,
            "GET /__marker__/{phase} HTTP/1.0\r\nHost: {hostport}\r\n\r\n"
        );
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink);
    }
}

fn main() -> amber::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    if a.len() < 5 {
        eprintln!("usage: pitr_workload local|remote N DATA_DIR BUCKET_URL [MARKER_URL]");
        std::process::exit(2);
    }
    let mode = a[1].as_str();
    let n: i64 = a[2].parse().expect("N");
    let marker_url = a.get(5).cloned();
    let level = match mode {
        "local" => DurabilityLevel::Local,
        "remote" => DurabilityLevel::Remote,
        _ => panic!("mode must be local or remote"),
    };
    let store = Store::open(
        Config::new(&a[3])
            .with_bucket(BucketConfig::Url(a[4].clone()))
            .with_durability(level),
    )?;
    let mut o = store.open_object("bench")?;
    o.exec(
        "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB)",
        &[],
    )?;
    o.end_turn()?.wait()?;
    // Let setup (first snapshot, the CREATE) reach the bucket before counting.
    let setup_seq = o.seq();
    while store
        .history("bench")?
        .latest()
        .map(|b| b.seq())
        .unwrap_or(0)
        < setup_seq
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));

    marker(&marker_url, &format!("{mode}-work-start"));
    let t0 = Instant::now();
    let mut max_commit = Duration::ZERO;
    for i in 1..=n {
        let c0 = Instant::now();
        o.exec(
            "INSERT INTO t VALUES (?1, randomblob(100))",
            &[ValueRef::Integer(i)],
        )?;
        o.end_turn()?.wait()?;
        max_commit = max_commit.max(c0.elapsed());
    }
    let work = t0.elapsed();
    let last_commit = Instant::now();
    marker(&marker_url, &format!("{mode}-work-end"));
    let last_seq = o.seq();
    print!(
        "mode={mode} n={n} work_s={:.3} tx_per_s={:.0} mean_commit_ms={:.3} max_commit_ms={:.1} last_seq={last_seq}",
        work.as_secs_f64(),
        n as f64 / work.as_secs_f64(),
        work.as_secs_f64() * 1000.0 / n as f64,
        max_commit.as_secs_f64() * 1000.0
    );
    if mode == "local" {
        // Replication lag: poll the bucket's listing (LIST requests) until the
        // newest listed commit is the last one written.
        let mut polls = 0u64;
        loop {
            polls += 1;
            let h = store.history("bench")?;
            if h.latest().map(|b| b.seq()).unwrap_or(0) >= last_seq {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let lag = last_commit.elapsed();
        marker(&marker_url, "local-lag-end");
        print!(
            " lag_ms={:.1} lag_polls={polls}",
            lag.as_secs_f64() * 1000.0
        );
        std::io::stdout().flush().ok();
        std::thread::sleep(Duration::from_secs(10));
        marker(&marker_url, "local-idle-end");
    }
    println!();
    drop(o);
    drop(store);
    Ok(())
}
