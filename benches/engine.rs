//! amber against raw SQLite, measured side by side in one run: the same
//! bundled library and the same pragmas, raw calls through libsqlite3-sys.
//!
//! Run: `cargo bench --bench engine`, then `python3 benches/report.py`
//! for the ratios (docs/benchmarks.md shows a run).

use std::ffi::{c_int, CString};
use std::fs::File;
use std::io::Write;
use std::ptr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amber::{Config, Object, Store, ValueRef};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use libsqlite3_sys as ffi;

/// A raw SQLite connection with amber's per-object pragmas.
struct Raw {
    db: *mut ffi::sqlite3,
}

struct RawStmt(*mut ffi::sqlite3_stmt);

impl Raw {
    fn open(path: &std::path::Path) -> Raw {
        let c = CString::new(path.to_str().unwrap()).unwrap();
        let mut db = ptr::null_mut();
        // SAFETY: valid path and out-pointer.
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                c.as_ptr(),
                &mut db,
                ffi::SQLITE_OPEN_READWRITE | ffi::SQLITE_OPEN_CREATE | ffi::SQLITE_OPEN_NOMUTEX,
                ptr::null(),
            )
        };
        assert_eq!(rc, 0);
        let r = Raw { db };
        r.exec(
            "PRAGMA auto_vacuum = INCREMENTAL; PRAGMA locking_mode = EXCLUSIVE; \
             PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
             PRAGMA cache_size = -1024; PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY;",
        );
        r
    }

    fn exec(&self, sql: &str) {
        let c = CString::new(sql).unwrap();
        // SAFETY: live handle, NUL-terminated SQL.
        let rc = unsafe {
            ffi::sqlite3_exec(self.db, c.as_ptr(), None, ptr::null_mut(), ptr::null_mut())
        };
        assert_eq!(rc, 0, "{sql}");
    }

    fn prepare(&self, sql: &str) -> RawStmt {
        let mut st = ptr::null_mut();
        // SAFETY: live handle; SQL valid for its length.
        let rc = unsafe {
            ffi::sqlite3_prepare_v3(
                self.db,
                sql.as_ptr().cast(),
                sql.len() as c_int,
                ffi::SQLITE_PREPARE_PERSISTENT,
                &mut st,
                ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0, "{sql}");
        RawStmt(st)
    }
}

impl RawStmt {
    fn bind_i64(&self, i: c_int, v: i64) {
        // SAFETY: live statement.
        unsafe { ffi::sqlite3_bind_int64(self.0, i, v) };
    }
    fn bind_text(&self, i: c_int, s: &str) {
        // SAFETY: live statement; SQLite copies the text.
        unsafe {
            ffi::sqlite3_bind_text64(
                self.0,
                i,
                s.as_ptr().cast(),
                s.len() as u64,
                ffi::SQLITE_TRANSIENT(),
                ffi::SQLITE_UTF8 as u8,
            )
        };
    }
    fn bind_blob(&self, i: c_int, b: &[u8]) {
        // SAFETY: live statement; SQLite copies the blob.
        unsafe {
            ffi::sqlite3_bind_blob64(
                self.0,
                i,
                b.as_ptr().cast(),
                b.len() as u64,
                ffi::SQLITE_TRANSIENT(),
            )
        };
    }
    /// Steps once; returns the first column's bytes if a row came back.
    fn step_read(&self) -> Option<Vec<u8>> {
        // SAFETY: live statement; column pointers are copied before reset.
        unsafe {
            let rc = ffi::sqlite3_step(self.0);
            let out = if rc == ffi::SQLITE_ROW {
                let p = ffi::sqlite3_column_blob(self.0, 0);
                let n = ffi::sqlite3_column_bytes(self.0, 0) as usize;
                Some(if p.is_null() {
                    Vec::new()
                } else {
                    std::slice::from_raw_parts(p as *const u8, n).to_vec()
                })
            } else {
                assert_eq!(rc, ffi::SQLITE_DONE);
                None
            };
            ffi::sqlite3_reset(self.0);
            out
        }
    }
}

impl Drop for RawStmt {
    fn drop(&mut self) {
        // SAFETY: owned statement.
        unsafe { ffi::sqlite3_finalize(self.0) };
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        // SAFETY: owned handle; statements are dropped first by the benches.
        unsafe { ffi::sqlite3_close(self.db) };
    }
}

const ROWS: i64 = 10_000;

fn seeded_object(store: &Store, name: &str) -> Object {
    let mut o = store.open_object(name).unwrap();
    o.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB)", &[])
        .unwrap();
    for i in 0..ROWS {
        o.exec(
            "INSERT INTO t VALUES (?1, randomblob(100))",
            &[ValueRef::Integer(i)],
        )
        .unwrap();
        o.put(&format!("key{i:06}"), &[7u8; 100]).unwrap();
    }
    o.sync().unwrap().wait().unwrap();
    o
}

fn seeded_raw(dir: &std::path::Path) -> Raw {
    let r = Raw::open(&dir.join("raw.db"));
    r.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, v BLOB); CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;");
    r.exec("BEGIN");
    let ins = r.prepare("INSERT INTO t VALUES (?1, randomblob(100))");
    let kv = r.prepare("INSERT INTO kv VALUES (?1, ?2)");
    for i in 0..ROWS {
        ins.bind_i64(1, i);
        ins.step_read();
        kv.bind_text(1, &format!("key{i:06}"));
        kv.bind_blob(2, &[7u8; 100]);
        kv.step_read();
    }
    drop((ins, kv));
    r.exec("COMMIT");
    r
}

fn point_read(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Config::new(dir.path())).unwrap();
    let mut o = seeded_object(&store, "read");
    let raw = seeded_raw(dir.path());
    let sel = raw.prepare("SELECT v FROM t WHERE id = ?1");
    let mut g = c.benchmark_group("point_read");
    let mut i = 0i64;
    g.bench_function("raw_sqlite", |b| {
        b.iter(|| {
            i = (i + 7919) % ROWS;
            sel.bind_i64(1, i);
            sel.step_read().unwrap()
        })
    });
    g.bench_function("amber", |b| {
        b.iter(|| {
            i = (i + 7919) % ROWS;
            let c = o
                .exec("SELECT v FROM t WHERE id = ?1", &[ValueRef::Integer(i)])
                .unwrap();
            c.one().unwrap()
        })
    });
    g.finish();
}

fn point_write(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Config::new(dir.path())).unwrap();
    let mut o = seeded_object(&store, "write");
    let raw = seeded_raw(dir.path());
    let upd = raw.prepare("UPDATE t SET v = ?2 WHERE id = ?1");
    raw.exec("CREATE TABLE meta (id INTEGER PRIMARY KEY, seq INTEGER, time_ms INTEGER); INSERT INTO meta VALUES (1, 0, 0);");
    let begin = raw.prepare("BEGIN");
    let meta = raw.prepare("UPDATE meta SET seq = seq + 1, time_ms = ?1 WHERE id = 1");
    let commit = raw.prepare("COMMIT");
    let mut g = c.benchmark_group("point_write");
    let mut i = 0i64;
    let blob = [9u8; 100];
    g.bench_function("raw_sqlite", |b| {
        b.iter(|| {
            i = (i + 7919) % ROWS;
            upd.bind_i64(1, i);
            upd.bind_blob(2, &blob);
            upd.step_read();
        })
    });
    // The same SQLite work amber's turn does: a transaction that also
    // stamps the commit's sequence number and time.
    g.bench_function("raw_sqlite_same_work", |b| {
        b.iter(|| {
            i = (i + 7919) % ROWS;
            begin.step_read();
            upd.bind_i64(1, i);
            upd.bind_blob(2, &blob);
            upd.step_read();
            meta.bind_i64(1, i);
            meta.step_read();
            commit.step_read();
        })
    });
    // One write per turn: the turn's commit is part of the cost. The
    // ticket is not awaited (that is `durable_confirm`).
    g.bench_function("amber", |b| {
        b.iter(|| {
            i = (i + 7919) % ROWS;
            o.exec(
                "UPDATE t SET v = ?2 WHERE id = ?1",
                &[ValueRef::Integer(i), ValueRef::Blob(&blob)],
            )
            .unwrap();
            o.end_turn().unwrap()
        })
    });
    let dir2 = tempfile::tempdir().unwrap();
    let store2 =
        Store::open(Config::new(dir2.path()).with_bucket(amber::BucketConfig::Disabled)).unwrap();
    let mut o2 = seeded_object(&store2, "write");
    g.bench_function("amber_no_bucket", |b| {
        b.iter(|| {
            i = (i + 7919) % ROWS;
            o2.exec(
                "UPDATE t SET v = ?2 WHERE id = ?1",
                &[ValueRef::Integer(i), ValueRef::Blob(&blob)],
            )
            .unwrap();
            o2.end_turn().unwrap()
        })
    });
    g.finish();
    drop((begin, meta, commit, upd));
    o.sync().unwrap().wait().unwrap();
}

fn kv_put_100(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Config::new(dir.path())).unwrap();
    let mut o = seeded_object(&store, "kv");
    let raw = seeded_raw(dir.path());
    let put = raw.prepare("INSERT OR REPLACE INTO kv (key, value) VALUES (?1, ?2)");
    let keys: Vec<String> = (0..ROWS).map(|i| format!("key{i:06}")).collect();
    let val = [3u8; 100];
    let mut base = 0usize;
    let mut g = c.benchmark_group("kv_put_100_per_turn");
    g.bench_function("raw_sqlite_autocommit", |b| {
        b.iter(|| {
            base = (base + 100) % (ROWS as usize - 100);
            for k in &keys[base..base + 100] {
                put.bind_text(1, k);
                put.bind_blob(2, &val);
                put.step_read();
            }
        })
    });
    g.bench_function("raw_sqlite_one_txn", |b| {
        b.iter(|| {
            base = (base + 100) % (ROWS as usize - 100);
            raw.exec("BEGIN");
            for k in &keys[base..base + 100] {
                put.bind_text(1, k);
                put.bind_blob(2, &val);
                put.step_read();
            }
            raw.exec("COMMIT");
        })
    });
    g.bench_function("amber", |b| {
        b.iter(|| {
            base = (base + 100) % (ROWS as usize - 100);
            for k in &keys[base..base + 100] {
                o.put(k, &val).unwrap();
            }
            o.end_turn().unwrap()
        })
    });
    g.finish();
    o.sync().unwrap().wait().unwrap();
}

fn cached_get(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Config::new(dir.path())).unwrap();
    let mut o = seeded_object(&store, "get");
    let raw = seeded_raw(dir.path());
    let sel = raw.prepare("SELECT value FROM kv WHERE key = ?1");
    let keys: Vec<String> = (0..1000).map(|i| format!("key{i:06}")).collect();
    for k in &keys {
        o.get(k).unwrap();
    }
    let mut i = 0usize;
    let mut g = c.benchmark_group("cached_get");
    g.bench_function("raw_sqlite", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            sel.bind_text(1, &keys[i]);
            sel.step_read().unwrap()
        })
    });
    g.bench_function("amber", |b| {
        b.iter(|| {
            i = (i + 1) % keys.len();
            o.get(&keys[i]).unwrap().unwrap()
        })
    });
    g.finish();
}

fn durable_confirm(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Config::new(dir.path())).unwrap();
    let mut o = store.open_object("durable").unwrap();
    let mut f = File::create(dir.path().join("bare")).unwrap();
    let mut g = c.benchmark_group("durable_confirm");
    g.sample_size(50).measurement_time(Duration::from_secs(8));
    g.bench_function("bare_write_fdatasync", |b| {
        b.iter(|| {
            f.write_all(&[1u8; 128]).unwrap();
            f.sync_data().unwrap();
        })
    });
    // Plain SQLite with the same durability: WAL, synchronous=FULL (an
    // fsync of the WAL in every commit, on the committing thread).
    let raw = seeded_raw(dir.path());
    raw.exec("PRAGMA synchronous = FULL");
    let upd = raw.prepare("INSERT OR REPLACE INTO kv (key, value) VALUES ('counter', ?1)");
    let mut m = 0i64;
    g.bench_function("raw_sqlite_wal_synchronous_full", |b| {
        b.iter(|| {
            m += 1;
            upd.bind_blob(1, &m.to_le_bytes());
            upd.step_read();
        })
    });
    drop(upd);
    drop(raw);
    let mut n = 0u64;
    g.bench_function("amber_put_end_turn_wait", |b| {
        b.iter(|| {
            n += 1;
            o.put("counter", &n.to_le_bytes()).unwrap();
            o.end_turn().unwrap().wait().unwrap()
        })
    });
    // The same without log shipping: what the bucket's work (capture, and
    // a PUT with its own fsyncs on the same disk) costs the local confirm.
    let dir2 = tempfile::tempdir().unwrap();
    let store2 =
        Store::open(Config::new(dir2.path()).with_bucket(amber::BucketConfig::Disabled)).unwrap();
    let mut o2 = store2.open_object("durable").unwrap();
    g.bench_function("amber_no_bucket_put_end_turn_wait", |b| {
        b.iter(|| {
            n += 1;
            o2.put("counter", &n.to_le_bytes()).unwrap();
            o2.end_turn().unwrap().wait().unwrap()
        })
    });
    g.finish();
}

/// Confirmed commits per second with 1 and 8 busy objects: fsyncs of
/// different objects overlap, so throughput should grow.
fn group_commit(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Config::new(dir.path())).unwrap();
    let mut g = c.benchmark_group("group_commit");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    for objects in [1usize, 8] {
        let objs: Vec<Arc<std::sync::Mutex<Object>>> = (0..objects)
            .map(|i| {
                Arc::new(std::sync::Mutex::new(
                    store.open_object(&format!("gc-{objects}-{i}")).unwrap(),
                ))
            })
            .collect();
        // One element = one confirmed commit; time per commit across all
        // objects, so a lower figure means more commits per second.
        g.bench_function(format!("{objects}_objects"), |b| {
            b.iter_custom(|iters| {
                let per = iters.div_ceil(objects as u64);
                let start = Instant::now();
                let hs: Vec<_> = objs
                    .iter()
                    .map(|o| {
                        let o = o.clone();
                        std::thread::spawn(move || {
                            let mut o = o.lock().unwrap();
                            for i in 0..per {
                                o.put("k", &i.to_le_bytes()).unwrap();
                                o.end_turn().unwrap().wait().unwrap();
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.join().unwrap();
                }
                start.elapsed() * iters as u32 / (per * objects as u64) as u32
            })
        });
    }
    g.finish();
    let _ = BatchSize::SmallInput;
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = point_read, point_write, kv_put_100, cached_get, durable_confirm, group_commit
}
criterion_main!(benches);
