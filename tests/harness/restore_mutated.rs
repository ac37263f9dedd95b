//! The `restore_mutated` target: restore from a bucket whose objects were
//! flipped, truncated, deleted, swapped or extended. The outcome is either
//! a typed error or a database that is exactly the model's state at the
//! commit the restore reports (never a panic, never wrong data), and a
//! non-partial restore to a bookmark lands exactly on it.
//!
//! The pristine bucket is built once per process (a store at `Remote`
//! durability writing turns to a memory bucket, with several snapshots);
//! each input copies it, mutates the copy, and restores.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use amber::pitr::{restore_to_file, Bookmark, Bucket, KeyLayout, RestoreOptions, RestoreTarget};
use amber::{BucketConfig, Config, DurabilityLevel, ObjectId, Store, ValueRef};
use futures_util::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::restored::{read_db, DbState};
use super::Input;

struct Pristine {
    objects: Vec<(Path, Vec<u8>)>,
    id: ObjectId,
    epoch: u64,
    /// `states[n]`: the state after commit n (for n >= the first snapshot).
    states: Vec<DbState>,
    rt: tokio::runtime::Runtime,
    tmp: tempfile::TempDir,
    n: AtomicU64,
}

fn value(i: u64) -> Vec<u8> {
    let len = 200 + (i * 4099 % 9000) as usize;
    (0..len).map(|j| (i as usize * 7 + j) as u8).collect()
}

fn build() -> Pristine {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let bucket = Bucket::from_store(mem.clone(), KeyLayout::new("").expect("layout"));
    let mut cfg = Config::new(tmp.path().join("data"))
        .with_bucket(BucketConfig::Bucket(bucket))
        .with_durability(DurabilityLevel::Remote);
    cfg.pitr.snapshot_min_interval = Duration::ZERO;
    cfg.sync_threads = 1;
    let store = Store::open(cfg).expect("store");
    let mut o = store.open_object("m").expect("object");
    let mut states = vec![DbState::default(); o.seq() as usize + 1];
    o.exec("CREATE TABLE t (i INTEGER PRIMARY KEY, body BLOB)", &[])
        .expect("create");
    let mut live = DbState {
        seq: o.end_turn().expect("turn").wait().expect("durable"),
        ..DbState::default()
    };
    states.push(live.clone());
    for i in 1..=24u64 {
        let v = value(i);
        // Few keys, big values: the log outgrows the database, so the
        // history gets several snapshots.
        let k = format!("k{}", i % 3);
        o.put(&k, &v).expect("put");
        live.kv.insert(k, v.clone());
        if i % 4 == 0 {
            o.exec(
                "INSERT INTO t (i, body) VALUES (?1, ?2)",
                &[ValueRef::Integer(i as i64), ValueRef::Blob(&v[..64])],
            )
            .expect("insert");
            live.rows.push((i as i64, v[..64].to_vec()));
        }
        if i % 7 == 0 {
            o.delete("k0").expect("delete");
            live.kv.remove("k0");
        }
        live.seq = o.end_turn().expect("turn").wait().expect("durable");
        assert_eq!(live.seq as usize, states.len());
        states.push(live.clone());
    }
    let id = o.id();
    let epoch = o.current_bookmark().epoch();
    drop(o);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let objects = rt.block_on(async {
        let metas: Vec<_> = mem.list(None).try_collect().await.expect("list");
        let mut out = Vec::new();
        for m in metas {
            let b = mem.get(&m.location).await.expect("get");
            out.push((m.location, b.bytes().await.expect("bytes").to_vec()));
        }
        out.sort_by(|a, b| a.0.as_ref().cmp(b.0.as_ref()));
        out
    });
    drop(store);
    Pristine {
        objects,
        id,
        epoch,
        states,
        rt,
        tmp,
        n: AtomicU64::new(0),
    }
}

fn pristine() -> &'static Pristine {
    static P: OnceLock<Pristine> = OnceLock::new();
    P.get_or_init(build)
}

pub fn run(data: &[u8]) {
    let p = pristine();
    let mut inp = Input::new(data);
    let mut objects: BTreeMap<Path, Vec<u8>> = p.objects.iter().cloned().collect();
    let keys: Vec<Path> = p.objects.iter().map(|(k, _)| k.clone()).collect();
    for _ in 0..(inp.u8() % 6) {
        let op = inp.u8() % 6;
        let key = keys[inp.u8() as usize % keys.len()].clone();
        let Some(bytes) = objects.get_mut(&key) else {
            continue;
        };
        let len = bytes.len().max(1);
        match op {
            0 => {
                let pos = inp.u16() as usize % len;
                let x = inp.u8() | 1;
                if let Some(b) = bytes.get_mut(pos) {
                    *b ^= x;
                }
            }
            1 => bytes.truncate(inp.u16() as usize % len),
            2 => {
                objects.remove(&key);
            }
            3 => {
                let other = &keys[inp.u8() as usize % keys.len()];
                let src = p.objects.iter().find(|(k, _)| k == other).map(|(_, b)| b);
                if let Some(src) = src {
                    *bytes = src.clone();
                }
            }
            4 => bytes.extend_from_slice(inp.bytes(64)),
            _ => {
                let pos = inp.u16() as usize % len;
                for (i, b) in inp.bytes(16).iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(pos + i) {
                        *slot = *b;
                    }
                }
            }
        }
    }
    let latest = (p.states.len() - 1) as u64;
    let t = inp.u8();
    let target = if t.is_multiple_of(4) {
        RestoreTarget::Latest
    } else {
        RestoreTarget::Bookmark(Bookmark::new(p.epoch, t as u64 % (latest + 3)))
    };
    let opts = RestoreOptions {
        allow_partial: inp.u8() & 1 == 1,
        prefetch: 1 + inp.u8() as usize % 3,
        progress: None,
    };

    let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let bucket = Bucket::from_store(mem.clone(), KeyLayout::new("").expect("layout"));
    let out: PathBuf = p
        .tmp
        .path()
        .join(format!("r{}", p.n.fetch_add(1, Ordering::Relaxed)));
    let res = p.rt.block_on(async {
        for (k, b) in &objects {
            mem.put(k, PutPayload::from(b.clone())).await.expect("put");
        }
        restore_to_file(&bucket, &p.id, &target, &out, &opts).await
    });
    match res {
        Ok(rep) => {
            let st = read_db(&out)
                .unwrap_or_else(|e| panic!("restore said {rep:?} but the file is damaged: {e}"));
            let n = rep.bookmark.seq();
            assert!(n <= latest, "restored past the newest commit: {rep:?}");
            assert_eq!(st.seq, n, "the file's commit differs from the report");
            assert_eq!(
                st, p.states[n as usize],
                "restore to {n} gave a state the history never had"
            );
            assert!(rep.bookmark <= rep.target, "{rep:?}");
            if rep.partial {
                assert!(opts.allow_partial, "partial without allow_partial: {rep:?}");
                assert!(rep.damage.is_some(), "{rep:?}");
            } else if let RestoreTarget::Bookmark(b) = target {
                assert_eq!(rep.bookmark, b, "restored elsewhere than asked");
            }
        }
        Err(e) => {
            // A typed error that says something.
            assert!(!e.to_string().is_empty());
        }
    }
    let _ = std::fs::remove_file(&out);
}
