//! Cluster mode in one process: two hosts (two `Store`s) on one in-memory
//! bucket, each with its own clock, so a test decides who believes whose
//! lease has run out. The three-process tests against moto are in
//! tests/cluster_moto.rs; the seeded two-writer simulation is in
//! tests/cluster_sim.rs.

use std::sync::Arc;
use std::time::Duration;

use amber::pitr::{Bucket, KeyLayout};
use amber::testing::{Faults, FaultyStore};
use amber::{
    BucketConfig, ClusterConfig, Config, DurabilityLevel, ErrorKind, ManualClock, Object, Store,
};
use object_store::memory::InMemory;
use object_store::ObjectStore;

const TTL: Duration = Duration::from_millis(400);
const T0: u64 = 1_800_000_000_000;

struct Host {
    _dir: tempfile::TempDir,
    store: Store,
    clock: Arc<ManualClock>,
}

fn shared_bucket() -> (Bucket, Arc<FaultyStore>) {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let counted = Arc::new(FaultyStore::new(inner, 1, Faults::none()));
    let bucket = Bucket::from_store(counted.clone(), KeyLayout::new("c").unwrap());
    (bucket, counted)
}

fn host(bucket: &Bucket, name: &str) -> Host {
    host_with_ttl(bucket, name, TTL)
}

fn host_with_ttl(bucket: &Bucket, name: &str, ttl: Duration) -> Host {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(T0));
    let mut cc = ClusterConfig::new(name, format!("{name}.test:1"));
    cc.lease_ttl = ttl;
    let mut cfg = Config::new(dir.path())
        .with_bucket(BucketConfig::Bucket(bucket.clone()))
        .with_durability(DurabilityLevel::Remote)
        .with_clock(clock.clone())
        .with_cluster(cc);
    cfg.pitr.upload_attempts = 3;
    cfg.pitr.retry_base = Duration::from_millis(5);
    Host {
        store: Store::open(cfg).unwrap(),
        clock,
        _dir: dir,
    }
}

fn put(o: &mut Object, k: &str, v: &str) -> amber::Result<()> {
    o.put(k, v.as_bytes())?;
    o.end_turn()?.wait_timeout(Duration::from_secs(20))?;
    Ok(())
}

fn get(o: &mut Object, k: &str) -> Option<String> {
    o.get(k)
        .unwrap()
        .map(|v| String::from_utf8(v.to_vec()).unwrap())
}

/// Makes every host's view of time `ms` later (renewals stamp the new
/// time from then on). A jump past the TTL lapses a host's own lease too;
/// wait until the renewer has it back (under a new incarnation).
fn advance(hosts: &[&Host], ms: u64) {
    for h in hosts {
        h.clock.advance(ms);
    }
}

/// The ownership record names `h`'s incarnation and `o`'s epoch.
fn assert_owner(h: &Host, o: &Object) {
    let c = h.store.cluster().unwrap();
    let rec = c.owner_of(o.id()).unwrap().unwrap();
    assert_eq!(rec.host, c.incarnation());
    assert_eq!(rec.epoch, o.epoch());
}

fn wait_lease(h: &Host) {
    let c = h.store.cluster().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !c.lease_valid() {
        assert!(std::time::Instant::now() < deadline, "lease never renewed");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn one_owner_at_a_time_and_takeover_after_the_lease_lapses() {
    let (bucket, _) = shared_bucket();
    let a = host(&bucket, "a");
    let b = host(&bucket, "b");
    let mut oa = a.store.open_object("room").unwrap();
    let e1 = oa.epoch();
    put(&mut oa, "k1", "v1").unwrap();

    // A live owner: B is told where to send the request.
    let e = b.store.open_object("room").err().unwrap();
    assert_eq!(e.kind(), ErrorKind::NotOwner, "{e}");
    assert_eq!(e.owner(), Some("a.test:1"));

    // A is cut off from the bucket; a TTL later it has fenced itself and
    // B may take the object.
    let old = a.store.cluster().unwrap().incarnation();
    a.store.cluster().unwrap().set_renewals_paused(true);
    advance(&[&a, &b], TTL.as_millis() as u64 + 1);
    let e = oa.put("late", b"x").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Fenced, "{e}");
    wait_lease(&b);
    let mut ob = b.store.open_object("room").unwrap();
    assert!(ob.epoch() > e1, "a takeover raises the epoch");
    assert_eq!(get(&mut ob, "k1").as_deref(), Some("v1"));
    assert_eq!(get(&mut ob, "late"), None);
    put(&mut ob, "k2", "v2").unwrap();
    assert_owner(&b, &ob);

    // A comes back: it rejoins under a new incarnation and is told to
    // forward to B.
    drop(oa);
    let ca = a.store.cluster().unwrap();
    ca.set_renewals_paused(false);
    wait_lease(&a);
    assert_ne!(ca.incarnation(), old);
    let e = a.store.open_object("room").err().unwrap();
    assert_eq!(e.kind(), ErrorKind::NotOwner, "{e}");
    assert_eq!(e.owner(), Some("b.test:1"));
}

/// The acknowledgement rule on its own: A still believes in its lease (its
/// clock says so), but B's clock says it lapsed and B took the object. A's
/// next commit lands in its old epoch and is not acknowledged.
#[test]
fn a_commit_is_not_acknowledged_once_the_record_names_another_host() {
    let (bucket, _) = shared_bucket();
    let a = host(&bucket, "a");
    let b = host(&bucket, "b");
    let mut oa = a.store.open_object("doc").unwrap();
    put(&mut oa, "before", "1").unwrap();
    // Only B's clock moves; A keeps renewing and believes it is the owner.
    advance(&[&b], TTL.as_millis() as u64 + 1);
    wait_lease(&b);
    let mut ob = b.store.open_object("doc").unwrap();
    assert!(a.store.cluster().unwrap().lease_valid());
    let e = put(&mut oa, "stale", "2").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Fenced, "{e}");
    assert!(oa.is_broken());
    // The new owner has what A acknowledged, and not what it did not.
    assert_eq!(get(&mut ob, "before").as_deref(), Some("1"));
    assert_eq!(get(&mut ob, "stale"), None);
    put(&mut ob, "after", "3").unwrap();
    assert!(a.store.verify("doc").unwrap().is_ok());
}

#[test]
fn a_point_in_time_restore_takes_a_new_epoch_through_the_record() {
    let (bucket, _) = shared_bucket();
    let a = host(&bucket, "a");
    let mut o = a.store.open_object("r").unwrap();
    put(&mut o, "k", "old").unwrap();
    let mark = o.current_bookmark();
    put(&mut o, "k", "new").unwrap();
    o.restore_on_next_open(mark).unwrap();
    let e0 = o.epoch();
    drop(o);
    let mut o = a.store.open_object("r").unwrap();
    assert!(o.epoch() > e0);
    assert_eq!(get(&mut o, "k").as_deref(), Some("old"));
    put(&mut o, "k2", "after-restore").unwrap();
    assert_owner(&a, &o);
}

#[test]
fn reopening_an_owned_object_keeps_its_epoch() {
    let (bucket, counted) = shared_bucket();
    let a = host(&bucket, "a");
    let mut o = a.store.open_object("x").unwrap();
    put(&mut o, "k", "v").unwrap();
    let e = o.epoch();
    drop(o);
    let before = counted.counts();
    let mut o = a.store.open_object("x").unwrap();
    assert_eq!(o.epoch(), e, "hibernation is not a new activation");
    assert_eq!(get(&mut o, "k").as_deref(), Some("v"));
    // One GET of the record; no LIST, no restore.
    let d = counted.counts();
    assert_eq!(d.list - before.list, 0, "{before:?} -> {d:?}");
}

#[test]
fn an_idle_host_makes_only_lease_renewals() {
    let (bucket, counted) = shared_bucket();
    let a = host(&bucket, "a");
    let mut o = a.store.open_object("quiet").unwrap();
    put(&mut o, "k", "v").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let before = counted.counts();
    std::thread::sleep(TTL * 3);
    let after = counted.counts();
    assert_eq!(after.get, before.get, "idle objects read nothing");
    assert_eq!(after.list, before.list, "idle objects list nothing");
    let renewals = after.put - before.put;
    // A renewal every quarter TTL: about 12 in three TTLs.
    assert!((6..=20).contains(&renewals), "{renewals} PUTs while idle");
}

/// The cost model's busy case (docs/scale-out.md): one segment PUT and one
/// ownership GET per acknowledged group commit, no LIST.
#[test]
fn each_group_commit_costs_one_put_and_one_get() {
    let (bucket, counted) = shared_bucket();
    // A long TTL keeps lease renewals out of the count.
    let a = host_with_ttl(&bucket, "a", Duration::from_secs(600));
    let mut o = a.store.open_object("busy").unwrap();
    put(&mut o, "warm", "up").unwrap();
    let before = counted.counts();
    for i in 0..20 {
        put(&mut o, &format!("k{i}"), "v").unwrap();
    }
    let d = counted.counts();
    assert_eq!(d.put - before.put, 20, "{before:?} -> {d:?}");
    assert_eq!(d.get - before.get, 20, "{before:?} -> {d:?}");
    assert_eq!(d.list - before.list, 0, "{before:?} -> {d:?}");
}

/// The shared log in cluster mode: a store segment holding many objects'
/// commits is acknowledged after one fence-record read, however many
/// objects it holds (docs/scale-out.md, the cost model).
#[test]
fn a_shared_segment_costs_one_fence_read_however_many_objects_it_holds() {
    let (bucket, counted) = shared_bucket();
    let a = host_with_ttl(&bucket, "a", Duration::from_secs(600));
    let mut objs: Vec<Object> = (0..40)
        .map(|i| a.store.open_object(&format!("room-{i}")).unwrap())
        .collect();
    // Each object's first commit opens its span (an `.open` marker).
    for o in &mut objs {
        put(o, "warm", "up").unwrap();
    }
    // A bucket round trip of some milliseconds, as over a network, so
    // that commits arrive while a PUT is in flight.
    counted.set_faults(Faults {
        delay: 1000,
        max_delay: Duration::from_millis(20),
        ..Faults::none()
    });
    let before = counted.counts();
    let rounds = 5;
    for r in 0..rounds {
        let tickets: Vec<_> = objs
            .iter_mut()
            .map(|o| {
                o.put(&format!("k{r}"), b"v").unwrap();
                o.end_turn().unwrap()
            })
            .collect();
        for t in tickets {
            t.wait_timeout(Duration::from_secs(20)).unwrap();
        }
    }
    let d = counted.counts();
    let (puts, gets) = (d.put - before.put, d.get - before.get);
    let commits = 40 * rounds;
    // One PUT in flight: a round's 40 commits share a few segments.
    assert!(puts * 4 <= commits, "{puts} PUTs for {commits} commits");
    assert_eq!(
        gets, puts,
        "one fence read per store segment: {before:?} -> {d:?}"
    );
    assert_eq!(d.list - before.list, 0, "{before:?} -> {d:?}");
    for (i, o) in objs.iter_mut().enumerate() {
        assert_eq!(
            get(o, &format!("k{}", rounds - 1)).as_deref(),
            Some("v"),
            "room-{i}"
        );
        assert_owner(&a, o);
    }
}

/// A takeover marks the old incarnation's fence record before it changes
/// the ownership record; the old owner, whose clock still says its lease
/// is live, reads the mark after its next PUT, acknowledges nothing, and
/// ends the incarnation, so its other objects stop acknowledging too.
#[test]
fn a_takeover_fences_every_object_of_the_old_incarnation() {
    let (bucket, _) = shared_bucket();
    let a = host(&bucket, "a");
    let b = host(&bucket, "b");
    let mut taken = a.store.open_object("taken").unwrap();
    let mut other = a.store.open_object("other").unwrap();
    put(&mut taken, "k", "1").unwrap();
    put(&mut other, "k", "1").unwrap();
    let old_inc = a.store.cluster().unwrap().incarnation();
    // Only b's clock moves: a still believes in its lease.
    b.clock.advance(TTL.as_millis() as u64 * 3);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut on_b = loop {
        match b.store.open_object("taken") {
            Ok(o) => break o,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(
                    matches!(e.kind(), ErrorKind::NotOwner | ErrorKind::Fenced),
                    "{e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("b never took the object: {e}"),
        }
    };
    assert_eq!(get(&mut on_b, "k").as_deref(), Some("1"));
    let mark = b.store.cluster().unwrap().fence_of(&old_inc).unwrap();
    let mark = mark.expect("the takeover left a fence record");
    assert_eq!(mark.host, old_inc);
    assert_eq!(mark.by, b.store.cluster().unwrap().incarnation());
    // a's next commit to the object it lost is not acknowledged...
    let e = put(&mut taken, "k", "stale").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Fenced, "{e}");
    // ...and neither is one to an object nobody took: the incarnation ended.
    let e = put(&mut other, "k", "2").unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Fenced | ErrorKind::Broken),
        "{e}"
    );
    assert_ne!(a.store.cluster().unwrap().incarnation(), old_inc);
    assert_eq!(get(&mut on_b, "k").as_deref(), Some("1"));
}

/// Every PUT lands but its answer is lost: the claim is settled by reading
/// the record back and finding our claim id, and the object opens.
#[test]
fn a_claim_whose_answer_was_lost_is_settled_by_its_claim_id() {
    let (bucket, faulty) = shared_bucket();
    let a = host_with_ttl(&bucket, "a", Duration::from_secs(600));
    faulty.set_faults(Faults {
        lost_response: 1000,
        ..Faults::none()
    });
    let mut o = a.store.open_object("lossy").unwrap();
    put(&mut o, "k", "v").unwrap();
    faulty.set_faults(Faults::none());
    assert!(faulty.injected().lost_responses >= 3);
    assert_owner(&a, &o);
}

#[test]
fn cluster_mode_refuses_a_bucket_that_cannot_fence() {
    let bdir = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::new(dir.path())
        .with_bucket(BucketConfig::Url(format!(
            "file://{}",
            bdir.path().display()
        )))
        .with_durability(DurabilityLevel::Remote)
        .with_cluster(ClusterConfig::new("h", "127.0.0.1:1"));
    let e = Store::open(cfg).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("cannot fence"), "{e}");
}

#[test]
fn cluster_mode_checks_its_configuration() {
    let (bucket, _) = shared_bucket();
    let dir = tempfile::tempdir().unwrap();
    let base = || Config::new(dir.path()).with_bucket(BucketConfig::Bucket(bucket.clone()));
    // Local durability would acknowledge before the ownership check.
    let e = Store::open(base().with_cluster(ClusterConfig::new("h", "x:1")))
        .err()
        .unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    for bad_addr in ["", "x", "x:0", ":80", "0.0.0.0:8787", "[::]:8787", "x:http"] {
        let e = Store::open(
            base()
                .with_durability(DurabilityLevel::Remote)
                .with_cluster(ClusterConfig::new("h", bad_addr)),
        )
        .err()
        .unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad_addr:?}: {e}");
    }
    for bad in ["", "a/b", "../x", "h h", &"x".repeat(65)] {
        let e = Store::open(
            base()
                .with_durability(DurabilityLevel::Remote)
                .with_cluster(ClusterConfig::new(bad, "x:1")),
        )
        .err()
        .unwrap();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}: {e}");
    }
    let e = Store::open(
        Config::new(dir.path())
            .with_bucket(BucketConfig::Disabled)
            .with_durability(DurabilityLevel::Remote)
            .with_cluster(ClusterConfig::new("h", "x:1")),
    )
    .err()
    .unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

#[test]
fn a_second_host_cannot_advertise_a_live_hosts_address() {
    let (bucket, _) = shared_bucket();
    let _a = host(&bucket, "a");
    let dir = tempfile::tempdir().unwrap();
    let cfg = Config::new(dir.path())
        .with_bucket(BucketConfig::Bucket(bucket.clone()))
        .with_durability(DurabilityLevel::Remote)
        .with_clock(Arc::new(ManualClock::new(T0)))
        .with_cluster(ClusterConfig::new("b", "a.test:1"));
    let e = Store::open(cfg).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("already advertises"), "{e}");
}

/// A restore asked for under one ownership is not carried out after the
/// object moved: it would roll back what the next owner acknowledged.
#[test]
fn a_restore_request_left_behind_by_a_lost_ownership_is_discarded() {
    let (bucket, _) = shared_bucket();
    let a = host(&bucket, "a");
    let b = host(&bucket, "b");
    let mut oa = a.store.open_object("m").unwrap();
    put(&mut oa, "k", "v1").unwrap();
    let mark = oa.current_bookmark();
    put(&mut oa, "k", "v2").unwrap();
    oa.restore_on_next_open(mark).unwrap();
    drop(oa);
    // Before A reopens, B takes the object and acknowledges a write.
    a.store.cluster().unwrap().set_renewals_paused(true);
    advance(&[&a, &b], TTL.as_millis() as u64 + 1);
    wait_lease(&b);
    let mut ob = b.store.open_object("m").unwrap();
    assert_eq!(get(&mut ob, "k").as_deref(), Some("v2"));
    put(&mut ob, "k", "v3-by-b").unwrap();
    drop(ob);
    b.store.cluster().unwrap().leave().unwrap();
    // A comes back and takes the object again: B's write stands.
    a.store.cluster().unwrap().set_renewals_paused(false);
    wait_lease(&a);
    let mut oa = a.store.open_object("m").unwrap();
    assert_eq!(get(&mut oa, "k").as_deref(), Some("v3-by-b"));
    assert!(!oa.dir().join("restore-pending").exists());
}

/// Joining a cluster keeps what a store acknowledged before it joined.
#[test]
fn a_store_that_joins_a_cluster_keeps_its_local_data() {
    // (1) It ran without a bucket: everything is local only.
    // (2) It ran with this bucket at local durability: all shipped.
    for shared in [false, true] {
        let (bucket, _) = shared_bucket();
        let dir = tempfile::tempdir().unwrap();
        {
            let cfg = Config::new(dir.path()).with_bucket(if shared {
                BucketConfig::Bucket(bucket.clone())
            } else {
                BucketConfig::Disabled
            });
            let store = Store::open(cfg).unwrap();
            let mut o = store.open_object("legacy").unwrap();
            for i in 0..5 {
                put(&mut o, &format!("k{i}"), "before-cluster").unwrap();
            }
            o.close().unwrap();
        }
        let mut cc = ClusterConfig::new("a", "a.test:1");
        cc.lease_ttl = TTL;
        let cfg = Config::new(dir.path())
            .with_bucket(BucketConfig::Bucket(bucket.clone()))
            .with_durability(DurabilityLevel::Remote)
            .with_cluster(cc);
        let store = Store::open(cfg).unwrap();
        let mut o = store.open_object("legacy").unwrap();
        for i in 0..5 {
            assert_eq!(
                get(&mut o, &format!("k{i}")).as_deref(),
                Some("before-cluster"),
                "shared bucket: {shared}"
            );
        }
        put(&mut o, "k5", "in-cluster").unwrap();
        // The new epoch is restorable from the bucket alone.
        let out = dir.path().join("exported");
        store
            .restore(
                "legacy",
                amber::pitr::RestoreTarget::Latest,
                &out,
                amber::pitr::RestoreOptions::default(),
            )
            .unwrap();
    }
}
