//! The PITR formats from the outside: round trips for random inputs, every
//! single-byte corruption and every truncation of small files, bytes pinned
//! in the repository (so a format change is caught), the fuzz seed corpora,
//! and the bucket through `memory://` and `file://` URLs.
//!
//! Regenerate the pinned files and the seed corpora (only when the format
//! version changes) with
//! `cargo test --test pitr_format -- --ignored regenerate`.

use std::path::{Path, PathBuf};

use amber::pitr::keys::KeyKind;
use amber::pitr::{
    decode_segment, decode_snapshot, encode_segment, encode_snapshot, Bucket, CommitInfo,
    DecodeLimits, Record, SegmentReader, SnapshotOptions, SnapshotReader, SnapshotWriter,
};
use amber::{ErrorKind, ObjectId};
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use proptest::prelude::*;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pinned_object() -> ObjectId {
    ObjectId::from_hex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff").unwrap()
}

const PINNED_EPOCH: u64 = 0x0102_0304_0506_0708;
const T0: u64 = 1_700_000_000_000;

fn page(n: u32, page_size: u32) -> Vec<u8> {
    let mut p: Vec<u8> = (0..page_size)
        .map(|i| (n.wrapping_mul(31).wrapping_add(i.wrapping_mul(7)) % 251) as u8)
        .collect();
    if n == 1 {
        p[..16].copy_from_slice(b"SQLite format 3\0");
    }
    p
}

fn commit(seq: u64, time: u64, db_size_pages: u32) -> CommitInfo {
    CommitInfo {
        seq,
        commit_time_ms: time,
        db_size_pages,
        page_size: 512,
    }
}

fn rec(seq: u64, time: u64, db_size_pages: u32, pages: &[u32]) -> Record {
    Record::with_pages(
        commit(seq, time, db_size_pages),
        pages.iter().map(|&n| (n, page(n, 512))),
    )
    .unwrap()
}

/// The records pinned in `tests/data/segment-v1.bin`.
fn pinned_records() -> Vec<Record> {
    vec![
        rec(41, T0, 3, &[1, 3]),
        rec(42, T0, 3, &[]),
        rec(43, T0 + 5, 4, &[4]),
    ]
}

/// The state pinned in `tests/data/snapshot-v1.bin`: 5 pages, 2 per chunk.
fn pinned_snapshot_at() -> CommitInfo {
    commit(43, T0 + 5, 5)
}

fn pinned_image() -> Vec<u8> {
    (1..=5).flat_map(|n| page(n, 512)).collect()
}

fn snapshot_bytes(
    object: &ObjectId,
    epoch: u64,
    at: CommitInfo,
    image: &[u8],
    chunk: u32,
) -> Vec<u8> {
    let opts = SnapshotOptions {
        chunk_bytes: chunk,
        ..SnapshotOptions::default()
    };
    let mut w = SnapshotWriter::new(Vec::new(), object, epoch, at, opts).unwrap();
    w.write_image(image).unwrap();
    w.finish().unwrap()
}

fn pinned_segment_bytes() -> Vec<u8> {
    encode_segment(&pinned_object(), PINNED_EPOCH, &pinned_records()).unwrap()
}

fn pinned_snapshot_bytes() -> Vec<u8> {
    snapshot_bytes(
        &pinned_object(),
        2,
        pinned_snapshot_at(),
        &pinned_image(),
        1024,
    )
}

/// The seed corpora: a few small, valid files per fuzz target.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let o = pinned_object();
    vec![
        (
            "segment_decode",
            "valid-3-records.seg",
            pinned_segment_bytes(),
        ),
        (
            "segment_decode",
            "valid-1-record.seg",
            encode_segment(&o, 1, &[rec(1, T0, 1, &[1])]).unwrap(),
        ),
        (
            "segment_decode",
            "valid-no-pages.seg",
            encode_segment(
                &o,
                0,
                &[rec(u64::MAX - 1, 0, 1, &[]), rec(u64::MAX, 0, 1, &[])],
            )
            .unwrap(),
        ),
        (
            "snapshot_decode",
            "valid-3-chunks.snap",
            pinned_snapshot_bytes(),
        ),
        (
            "snapshot_decode",
            "valid-empty.snap",
            snapshot_bytes(&o, 0, commit(0, 0, 0), &[], 512),
        ),
        (
            "snapshot_decode",
            "valid-1-chunk.snap",
            encode_snapshot(&o, 7, commit(9, T0, 2), &pinned_image()[..1024]).unwrap(),
        ),
    ]
}

#[test]
#[ignore = "writes the pinned files and seed corpora; run by hand on a format change"]
fn regenerate() {
    let data = root().join("tests/data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("segment-v1.bin"), pinned_segment_bytes()).unwrap();
    std::fs::write(data.join("snapshot-v1.bin"), pinned_snapshot_bytes()).unwrap();
    for (target, name, bytes) in seeds() {
        let dir = root().join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

#[test]
fn pinned_segment_v1_still_decodes() {
    let bytes = std::fs::read(root().join("tests/data/segment-v1.bin")).unwrap();
    assert_eq!(&bytes[..10], b"AMBERSEG\x01\x00", "magic and version 1");
    let seg = decode_segment(&bytes).unwrap();
    assert_eq!(seg.records, pinned_records());
    assert_eq!(seg.header.object, pinned_object());
    assert_eq!(seg.header.epoch, PINNED_EPOCH);
    assert_eq!((seg.header.first_seq, seg.header.last_seq), (41, 43));
    assert_eq!(
        (seg.header.first_time_ms, seg.header.last_time_ms),
        (T0, T0 + 5)
    );
}

#[test]
fn pinned_snapshot_v1_still_decodes() {
    let bytes = std::fs::read(root().join("tests/data/snapshot-v1.bin")).unwrap();
    assert_eq!(&bytes[..10], b"AMBERSNP\x01\x00", "magic and version 1");
    let snap = decode_snapshot(&bytes).unwrap();
    assert_eq!(snap.image, pinned_image());
    assert_eq!(snap.header.commit, pinned_snapshot_at());
    assert_eq!(snap.header.object, pinned_object());
    assert_eq!(
        (
            snap.header.epoch,
            snap.header.chunk_pages,
            snap.header.chunk_count
        ),
        (2, 2, 3)
    );
}

/// Decodes `bytes` record by record. Every record that comes out must be
/// the original at its index, and an error must name the last record that
/// came out as the last good one. Returns whether the whole file decoded.
fn check_segment_prefix(bytes: &[u8], original: &[Record]) -> bool {
    let Ok(reader) = SegmentReader::new(bytes) else {
        return false;
    };
    let mut got: Vec<Record> = Vec::new();
    for r in reader {
        match r {
            Ok(rec) => {
                assert_eq!(Some(&rec), original.get(got.len()), "a record changed");
                got.push(rec);
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Corruption);
                assert_eq!(e.last_good_seq(), got.last().map(Record::seq), "{e}");
                return false;
            }
        }
    }
    assert_eq!(got, original);
    true
}

fn check_snapshot_prefix(bytes: &[u8], image: &[u8]) -> bool {
    let Ok(reader) = SnapshotReader::new(bytes) else {
        return false;
    };
    for c in reader {
        match c {
            Ok(c) => {
                let start = c.offset as usize;
                assert_eq!(Some(&c.data[..]), image.get(start..start + c.data.len()));
            }
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Corruption);
                return false;
            }
        }
    }
    true
}

#[test]
fn every_flipped_byte_of_a_segment_is_caught() {
    let bytes = pinned_segment_bytes();
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut bad = bytes.clone();
            bad[i] ^= mask;
            assert!(
                decode_segment(&bad).is_err(),
                "flip {mask:#04x} at {i} went unnoticed"
            );
            assert!(!check_segment_prefix(&bad, &pinned_records()));
        }
    }
}

#[test]
fn every_flipped_byte_of_a_snapshot_is_caught() {
    let bytes = pinned_snapshot_bytes();
    for i in 0..bytes.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut bad = bytes.clone();
            bad[i] ^= mask;
            assert!(decode_snapshot(&bad).is_err(), "flip at {i}");
            assert!(!check_snapshot_prefix(&bad, &pinned_image()));
        }
    }
}

#[test]
fn every_truncation_is_caught() {
    let seg = pinned_segment_bytes();
    for cut in 0..seg.len() {
        assert!(decode_segment(&seg[..cut]).is_err(), "segment cut at {cut}");
        assert!(!check_segment_prefix(&seg[..cut], &pinned_records()));
    }
    let snap = pinned_snapshot_bytes();
    for cut in 0..snap.len() {
        assert!(
            decode_snapshot(&snap[..cut]).is_err(),
            "snapshot cut at {cut}"
        );
        assert!(!check_snapshot_prefix(&snap[..cut], &pinned_image()));
    }
    let mut longer = seg.clone();
    longer.push(0);
    assert!(decode_segment(&longer).is_err());
}

#[test]
fn seed_corpora_decode() {
    let mut seen = 0;
    for target in ["segment_decode", "snapshot_decode"] {
        let dir = root().join("fuzz/corpus").join(target);
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let bytes = std::fs::read(&path).unwrap();
            let ok = match target {
                "segment_decode" => decode_segment(&bytes).is_ok(),
                _ => decode_snapshot(&bytes).is_ok(),
            };
            let name = path.file_name().unwrap().to_string_lossy();
            if name.starts_with("valid-") {
                assert!(ok, "{} does not decode", path.display());
            }
            seen += 1;
        }
    }
    assert!(seen >= 6, "seed corpora missing");
    // The committed seeds are the ones `regenerate` writes.
    for (target, name, bytes) in seeds() {
        let path = root().join("fuzz/corpus").join(target).join(name);
        assert!(path.exists(), "{} missing", path.display());
        let stored = std::fs::read(&path).unwrap();
        let same = match target {
            "segment_decode" => decode_segment(&stored) == decode_segment(&bytes),
            _ => decode_snapshot(&stored) == decode_snapshot(&bytes),
        };
        assert!(same, "{} decodes differently", path.display());
    }
}

/// Offsets of the records (or chunks) of a valid file, walking the frame
/// headers: `frame_len` is the frame header size, `len_at` the offset of
/// `compressed_len` in it.
fn frames(bytes: &[u8], header_len: usize, frame_len: usize, len_at: usize) -> Vec<usize> {
    let body_end = bytes.len() - 24;
    let mut out = Vec::new();
    let mut at = header_len;
    while at < body_end {
        out.push(at);
        let l = &bytes[at + len_at..at + len_at + 4];
        at += frame_len + u32::from_le_bytes(l.try_into().unwrap()) as usize;
    }
    out
}

fn crc(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// Writes every CRC of a (mutated) file again, so the mutation reaches the
/// checks behind them, the way a fuzzer that learns CRCs would.
fn reseal(bytes: &mut [u8], header_len: usize, frame_len: usize, len_at: usize, offsets: &[usize]) {
    let hc = header_len - 4;
    let c = crc(&[&bytes[..hc]]);
    bytes[hc..header_len].copy_from_slice(&c.to_le_bytes());
    for &o in offsets {
        let l = &bytes[o + len_at..o + len_at + 4];
        let clen = u32::from_le_bytes(l.try_into().unwrap()) as usize;
        let end = (o + frame_len).saturating_add(clen).min(bytes.len());
        let c = crc(&[&bytes[o..o + frame_len - 4], &bytes[o + frame_len..end]]);
        bytes[o + frame_len - 4..o + frame_len].copy_from_slice(&c.to_le_bytes());
    }
    let t = bytes.len() - 24;
    let c = crc(&[&bytes[..t + 12]]);
    bytes[t + 12..t + 16].copy_from_slice(&c.to_le_bytes());
}

#[test]
fn resealed_field_mutations_never_panic() {
    let values = [0x00u8, 0x01, 0x02, 0x7f, 0x80, 0xfe, 0xff];
    let small = DecodeLimits {
        max_block_bytes: 1 << 20,
        max_database_bytes: 1 << 30,
    };
    let cases: [(Vec<u8>, usize, usize, usize); 2] = [
        (pinned_segment_bytes(), 92, 40, 28),
        (pinned_snapshot_bytes(), 88, 16, 4),
    ];
    for (kind, (bytes, header_len, frame_len, len_at)) in cases.into_iter().enumerate() {
        let offsets = frames(&bytes, header_len, frame_len, len_at);
        let mut fields: Vec<usize> = (10..header_len - 4).collect();
        for &o in &offsets {
            fields.extend(o..o + frame_len - 4);
        }
        let t = bytes.len() - 24;
        fields.extend(t..t + 12);
        for &i in &fields {
            for v in values {
                let mut m = bytes.clone();
                if m[i] == v {
                    continue;
                }
                m[i] = v;
                reseal(&mut m, header_len, frame_len, len_at, &offsets);
                if kind == 0 {
                    let _ = amber::pitr::decode_segment_with(&m, small);
                    if let Ok(r) = SegmentReader::with_limits(&m, small) {
                        let _ = r.finish();
                    }
                } else {
                    let _ = amber::pitr::decode_snapshot_with(&m, small);
                }
            }
        }
    }
}

fn arb_records() -> impl Strategy<Value = Vec<Record>> {
    (
        any::<u64>(),
        prop::sample::select(vec![512u32, 1024, 4096]),
        prop::collection::vec(
            (
                0u64..1000,
                1u32..40,
                prop::collection::btree_set(1u32..40, 0..6),
                any::<u8>(),
            ),
            1..6,
        ),
    )
        .prop_map(|(start, page_size, specs)| {
            let start = start.min(u64::MAX - 10);
            let mut time = start % 1_000_000;
            specs
                .into_iter()
                .enumerate()
                .map(|(i, (dt, db_size, pages, fill))| {
                    time += dt;
                    let c = CommitInfo {
                        seq: start + i as u64,
                        commit_time_ms: time,
                        db_size_pages: db_size,
                        page_size,
                    };
                    let pages = pages.into_iter().filter(|&n| n <= db_size).map(|n| {
                        let mut p = vec![fill; page_size as usize];
                        p[..4].copy_from_slice(&n.to_le_bytes());
                        (n, p)
                    });
                    Record::with_pages(c, pages).unwrap()
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn segments_round_trip(records in arb_records(), epoch in any::<u64>()) {
        let bytes = encode_segment(&pinned_object(), epoch, &records).unwrap();
        let seg = decode_segment(&bytes).unwrap();
        prop_assert_eq!(&seg.records, &records);
        prop_assert_eq!(seg.header.epoch, epoch);
        prop_assert_eq!(seg.header.record_count as usize, records.len());
        // Skipping and decoding interleaved gives the same records.
        let mut r = SegmentReader::new(&bytes).unwrap();
        for (i, want) in records.iter().enumerate() {
            if i.is_multiple_of(2) {
                prop_assert_eq!(r.skip_record().unwrap().unwrap(), want.meta());
            } else {
                prop_assert_eq!(&r.next_record().unwrap().unwrap(), want);
            }
        }
        prop_assert!(r.finish().is_ok());
    }

    #[test]
    fn snapshots_round_trip(
        pages in 0u32..40,
        page_size in prop::sample::select(vec![512u32, 1024, 4096]),
        chunk in 1u32..20_000,
        seed in any::<u8>(),
    ) {
        let image: Vec<u8> = (0..pages as usize * page_size as usize)
            .map(|i| (i / 97) as u8 ^ seed)
            .collect();
        let at = CommitInfo { seq: 5, commit_time_ms: 6, db_size_pages: pages, page_size };
        let bytes = snapshot_bytes(&pinned_object(), 1, at, &image, chunk);
        let snap = decode_snapshot(&bytes).unwrap();
        prop_assert_eq!(snap.image, image);
        prop_assert_eq!(snap.header.commit, at);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_segment(&bytes);
        let _ = decode_snapshot(&bytes);
        let mut with_magic = b"AMBERSEG\x01\x00".to_vec();
        with_magic.extend_from_slice(&bytes);
        prop_assert!(decode_segment(&with_magic).is_err());
        let mut with_magic = b"AMBERSNP\x01\x00".to_vec();
        with_magic.extend_from_slice(&bytes);
        prop_assert!(decode_snapshot(&with_magic).is_err());
    }
}

#[test]
fn limits_are_enforced_on_pinned_bytes() {
    let small = DecodeLimits {
        max_block_bytes: 100,
        ..DecodeLimits::DEFAULT
    };
    let e = amber::pitr::decode_segment_with(&pinned_segment_bytes(), small).unwrap_err();
    assert_eq!(e.record_index(), Some(0));
    assert!(amber::pitr::decode_snapshot_with(&pinned_snapshot_bytes(), small).is_err());
}

async fn bucket_round_trip(url: &str) {
    let bucket = Bucket::open(url).unwrap();
    let layout = bucket.layout();
    let o = pinned_object();
    let seg = pinned_segment_bytes();
    let snap = pinned_snapshot_bytes();
    let k_seg = layout.segment(&o, PINNED_EPOCH, 41, 43).unwrap();
    let k_seg0 = layout.segment(&o, PINNED_EPOCH, 1, 40).unwrap();
    let k_snap = layout.snapshot(&o, PINNED_EPOCH, 43);
    let create = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    let store = bucket.store();
    store
        .put_opts(&k_seg, PutPayload::from(seg.clone()), create.clone())
        .await
        .unwrap();
    store
        .put_opts(&k_seg0, PutPayload::from(b"x".to_vec()), create.clone())
        .await
        .unwrap();
    store
        .put(&k_snap, PutPayload::from(snap.clone()))
        .await
        .unwrap();
    // A segment is written once: a second create is refused.
    let again = store
        .put_opts(&k_seg, PutPayload::from(seg.clone()), create)
        .await;
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "{url}: {again:?}"
    );

    let got = store.get(&k_seg).await.unwrap().bytes().await.unwrap();
    assert_eq!(decode_segment(&got).unwrap().records, pinned_records());
    let got = store.get(&k_snap).await.unwrap().bytes().await.unwrap();
    assert_eq!(decode_snapshot(&got).unwrap().image, pinned_image());

    let epochs = bucket.list_dir(&layout.object(&o)).await.unwrap();
    assert_eq!(epochs.dirs.len(), 1, "{url}");
    let parsed = layout.parse(&epochs.dirs[0]).unwrap();
    assert_eq!((parsed.epoch, parsed.kind), (PINNED_EPOCH, KeyKind::Epoch));
    let segs = bucket
        .list_dir(&layout.segments(&o, PINNED_EPOCH))
        .await
        .unwrap();
    let ranges: Vec<KeyKind> = segs
        .objects
        .iter()
        .map(|m| layout.parse(&m.location).unwrap().kind)
        .collect();
    assert_eq!(
        ranges,
        vec![
            KeyKind::Segment { first: 1, last: 40 },
            KeyKind::Segment {
                first: 41,
                last: 43
            }
        ],
        "{url}: listing in commit order"
    );
}

#[tokio::test]
async fn bucket_through_memory_url() {
    bucket_round_trip("memory://").await;
    bucket_round_trip("memory:///some/prefix").await;
}

#[tokio::test]
async fn bucket_through_file_url() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bucket dir");
    let url = format!("file://{}", path.display()).replace(' ', "%20");
    bucket_round_trip(&url).await;
    // The layout is visible on disk, under the URL's directory.
    let o = pinned_object();
    let on_disk = Path::new(&path)
        .join("objects")
        .join(o.to_hex())
        .join(format!("epoch-{PINNED_EPOCH:016x}"))
        .join("segments")
        .join("0000000000000029-000000000000002b.seg");
    assert!(on_disk.exists(), "{}", on_disk.display());
}

#[test]
fn bad_bucket_urls_are_invalid_input() {
    for url in ["", "file://x", "ftp://h/p", "s3://x", "memory://h"] {
        assert_eq!(
            Bucket::open(url).unwrap_err().kind(),
            ErrorKind::InvalidInput,
            "{url}"
        );
    }
}
