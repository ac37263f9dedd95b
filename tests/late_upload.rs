//! A dropped handle's last upload lands late, after a newer handle of the
//! same object has shipped further: the ship hint must not move back, or
//! the next open thinks the bucket and the WAL do not meet and bridges
//! with a snapshot nobody needed (issue #13, a round-1 finding).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amber::pitr::{Bucket, KeyLayout};
use amber::testing::{Faults, FaultyStore, Hook, Op, Request};
use amber::{BucketConfig, Config, DurabilityLevel, PitrConfig, Store, Tuning};
use object_store::memory::InMemory;
use object_store::ObjectStoreExt;

/// Holds the first segment PUT after `arm` until `release`.
#[derive(Default)]
struct Gate {
    armed: AtomicBool,
    released: AtomicBool,
    held: Mutex<Option<String>>,
}

#[async_trait::async_trait]
impl Hook for Gate {
    async fn before(&self, req: Request<'_>) -> object_store::Result<()> {
        if req.op == Op::Put
            && req.key.contains("/segments/")
            && self.armed.swap(false, Ordering::AcqRel)
        {
            *self.held.lock().unwrap() = Some(req.key.to_string());
            while !self.released.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        Ok(())
    }
}

fn until(what: &str, f: impl Fn() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(10), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// (epoch, shipped) from the object's ship hint, in the store catalog.
fn hint(data: &std::path::Path) -> (u64, u64) {
    let conn =
        amber::sqlite::Connection::open(&data.join("catalog.db"), "\u{1}none", Vec::new()).unwrap();
    let (st, _) = conn
        .prepare_next("SELECT epoch, shipped FROM ship_hints", false)
        .unwrap();
    let mut st = st.unwrap();
    assert!(st.step().unwrap(), "no ship hint");
    (st.column_i64(0) as u64, st.column_i64(1) as u64)
}

#[test]
fn a_late_upload_of_a_dropped_handle_does_not_move_the_ship_hint_back() {
    let mem = Arc::new(InMemory::new());
    let gate = Arc::new(Gate::default());
    let faulty = Arc::new(FaultyStore::new(mem.clone(), 1, Faults::none()).with_hook(gate.clone()));
    let bucket = Bucket::from_store(faulty, KeyLayout::new("").unwrap());
    let data = tempfile::tempdir().unwrap();
    let store = Store::open(
        Config::new(data.path())
            .with_bucket(BucketConfig::Bucket(bucket))
            .with_durability(DurabilityLevel::Remote)
            // The race is between two handles' own upload loops; the
            // shared log ships both through one loop, in order.
            .with_pitr(PitrConfig::default().with_shared_log(false))
            .with_tuning(Tuning {
                // Checkpoint soon after B's commits are shipped, so the WAL
                // restarts and only the bucket holds the older commits
                // (but not at A's second commit, whose upload is held: a
                // checkpoint waits for shipping).
                checkpoint_pages: 12,
                ..Tuning::default()
            }),
    )
    .unwrap();
    let mut a = store.open_object("o").unwrap();
    a.put("k", b"1").unwrap();
    a.end_turn().unwrap().wait().unwrap();
    // A's next segment is held in the bucket's hands; A goes away.
    gate.armed.store(true, Ordering::Release);
    a.put("k", b"2").unwrap();
    let late = a.end_turn().unwrap();
    until("A's PUT reaches the bucket", || {
        gate.held.lock().unwrap().is_some()
    });
    drop(a);

    // B ships commit 2 again from the WAL, then goes further.
    let mut b = store.open_object("o").unwrap();
    b.sync().unwrap().wait().unwrap();
    for v in 3..=8u8 {
        b.put("k", &[v]).unwrap();
        b.end_turn().unwrap().wait().unwrap();
    }
    let last = b.seq();
    drop(b);
    let (epoch, shipped) = hint(data.path());
    assert_eq!(shipped, last);

    // A's upload lands now, late.
    gate.released.store(true, Ordering::Release);
    let key = object_store::path::Path::from(gate.held.lock().unwrap().clone().unwrap());
    let rt = tokio::runtime::Runtime::new().unwrap();
    until("A's segment is in the bucket", || {
        rt.block_on(mem.head(&key)).is_ok()
    });
    until("A's upload finished", || late.is_done());
    assert_eq!(
        hint(data.path()),
        (epoch, last),
        "the late upload moved the hint back"
    );

    // The next open needs no bridging snapshot.
    let snapshots = |s: &Store| {
        s.history("o")
            .unwrap()
            .epochs
            .iter()
            .map(|e| e.snapshots.len())
            .sum::<usize>()
    };
    let before = snapshots(&store);
    let mut c = store.open_object("o").unwrap();
    c.sync().unwrap().wait().unwrap();
    assert_eq!(c.get("k").unwrap().as_deref(), Some(&[8u8][..]));
    drop(c);
    assert_eq!(
        snapshots(&store),
        before,
        "the reopen bridged with a snapshot"
    );
    let report = store.verify("o").unwrap();
    assert!(report.is_ok(), "{report:?}");
    drop(store);
    drop(late);
    drop(rt);
}
