//! Reading an object's commits out of the shared log.
//!
//! An epoch that shipped into store segments has, under its directory:
//! - `index/` files, each listing the object's runs in store segments
//!   `from_gen..=through_gen` of one stream, with the commits they hold in
//!   the key, so a LIST tells which ones a restore needs;
//! - `spans/` markers: `.open` was written with the first store segment of
//!   each span of shipping into a stream (before any of it was
//!   acknowledged), `.end` after the span's last run and index.
//!
//! Whatever part of a span no index covers (the last minute before a
//! crash, or an index whose PUT failed) is found by reading the tables of
//! contents of exactly those store segments of that stream.

use std::collections::BTreeMap;

use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::ObjectStoreExt;

use super::bucket::store_error;
use super::format::store_log::{
    decode_index, read_store_toc, store_header_len, StoreToc, StreamId, STORE_HEADER_FIXED,
};
use super::history::{SegmentRef, SegmentSource};
use super::keys::KeyKind;
use super::Bucket;
use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;

/// Bytes fetched first from a store segment: the header and a table of
/// about 56 entries; a longer table costs one more ranged GET.
const TOC_PROBE: u64 = 4096;
/// Tables of contents fetched at once when scanning a stream's tail: a
/// busy store writes many store segments a minute, and a restore of a
/// span no index covers yet reads the table of each.
const TOC_FETCHES: usize = 16;
/// Ranged GETs in flight for the runs of one index.
const RUN_FETCHES: usize = 8;

struct Covered {
    from: u64,
    through: u64,
    first: u64,
}

#[derive(Default)]
struct StreamView {
    covered: Vec<Covered>,
    /// (gen, seq) of `.open` and `.end` markers.
    opens: Vec<(u64, u64)>,
    ends: Vec<(u64, u64)>,
}

/// The epoch's segments in the shared log: one ref per index file (its
/// runs are fetched with it) and one per run found by scanning. `base` is
/// the epoch's oldest snapshot: nothing at or below it is needed.
pub(crate) async fn load_shared(
    bucket: &Bucket,
    id: &ObjectId,
    epoch: u64,
    base: Option<u64>,
) -> Result<Vec<SegmentRef>> {
    let layout = bucket.layout();
    let needed = |last: u64| base.is_none_or(|b| last > b);
    let mut streams: BTreeMap<StreamId, StreamView> = BTreeMap::new();
    let mut out = Vec::new();
    for meta in bucket.list_dir(&layout.index_dir(id, epoch)).await?.objects {
        let Ok(p) = layout.parse(&meta.location) else {
            continue;
        };
        if let KeyKind::Index {
            first,
            last,
            stream,
            from_gen,
            through_gen,
        } = p.kind
        {
            streams.entry(stream).or_default().covered.push(Covered {
                from: from_gen,
                through: through_gen,
                first,
            });
            if needed(last) {
                out.push(SegmentRef {
                    key: meta.location.clone(),
                    first,
                    last,
                    size: meta.size,
                    source: SegmentSource::Index { skip_through: base },
                });
            }
        }
    }
    for meta in bucket.list_dir(&layout.spans_dir(id, epoch)).await?.objects {
        let Ok(p) = layout.parse(&meta.location) else {
            continue;
        };
        if let KeyKind::Span {
            stream,
            gen,
            seq,
            open,
        } = p.kind
        {
            let v = streams.entry(stream).or_default();
            if open { &mut v.opens } else { &mut v.ends }.push((gen, seq));
        }
    }
    for (stream, mut v) in streams {
        v.covered.sort_by_key(|c| c.from);
        v.opens.sort_unstable();
        v.ends.sort_unstable();
        let gaps = gaps(&v, base);
        if gaps.is_empty() {
            continue;
        }
        out.extend(scan(bucket, id, epoch, &stream, &gaps).await?);
    }
    Ok(out)
}

/// The generation ranges of `v`'s spans that no index covers and that may
/// hold commits above `base`.
fn gaps(v: &StreamView, base: Option<u64>) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(open, _) in &v.opens {
        let end = v.ends.iter().find(|(g, _)| *g >= open).copied();
        if let (Some(b), Some((_, last))) = (base, end) {
            if last <= b {
                continue; // the whole span is older than anything needed
            }
        }
        let hi = end.map_or(u64::MAX, |(g, _)| g);
        let mut push = |a: u64, b: u64, next_first: Option<u64>| {
            // Within a span an object's commits rise with the generation,
            // so a gap before an index starting at or below base+1 holds
            // only commits nothing needs.
            let stale = matches!((base, next_first), (Some(b0), Some(f)) if f <= b0 + 1);
            if a <= b && !stale {
                out.push((a, b));
            }
        };
        let mut cur = Some(open);
        for c in &v.covered {
            let Some(at) = cur else { break };
            if c.through < at || c.from > hi {
                continue;
            }
            if c.from > at {
                push(at, c.from - 1, Some(c.first));
            }
            cur = c.through.checked_add(1).map(|n| n.max(at));
        }
        if let Some(at) = cur {
            push(at, hi, None);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// Reads the tables of contents of `stream`'s store segments in `gaps` and
/// returns this object's runs in them.
async fn scan(
    bucket: &Bucket,
    id: &ObjectId,
    epoch: u64,
    stream: &StreamId,
    gaps: &[(u64, u64)],
) -> Result<Vec<SegmentRef>> {
    let layout = bucket.layout();
    let lo = gaps.iter().map(|g| g.0).min().unwrap_or(0);
    let hi = gaps.iter().map(|g| g.1).max().unwrap_or(0);
    // S3 and the in-memory store list in key order, so the listing can
    // stop past the last gap; a local directory lists in any order.
    let ordered = bucket
        .url()
        .is_some_and(|u| matches!(u.scheme(), "s3" | "memory"));
    let dir = layout.stream(stream);
    let mut listing = match lo.checked_sub(1) {
        Some(before) => bucket
            .store()
            .list_with_offset(Some(&dir), &layout.store_segment(stream, before)),
        None => bucket.store().list(Some(&dir)),
    };
    let mut keys = Vec::new();
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|e| store_error("listing a stream of store segments", e))?;
        let Some((_, gen)) = layout.parse_store_segment(&meta.location) else {
            continue;
        };
        if gen > hi && ordered {
            break;
        }
        if gaps.iter().any(|(a, b)| (*a..=*b).contains(&gen)) {
            keys.push((gen, meta.location));
        }
    }
    keys.sort_by_key(|k| k.0);
    let tocs: Vec<(Path, StoreToc)> =
        futures_util::stream::iter(keys.into_iter().map(|(_, key)| async move {
            let toc = read_toc(bucket, &key).await?;
            Ok::<_, Error>((key, toc))
        }))
        .buffered(TOC_FETCHES)
        .try_collect()
        .await?;
    let mut out = Vec::new();
    for (key, toc) in tocs {
        for e in toc.entries {
            if e.object == *id && e.epoch == epoch {
                out.push(SegmentRef {
                    key: key.clone(),
                    first: e.first,
                    last: e.last,
                    size: e.len,
                    source: SegmentSource::Packed {
                        offset: e.offset,
                        len: e.len,
                    },
                });
            }
        }
    }
    Ok(out)
}

/// GETs `len` bytes at `offset` of `key`; a missing file is damage.
async fn get_range(bucket: &Bucket, key: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    let missing = |e: object_store::Error| match e {
        object_store::Error::NotFound { .. } => Error::new(
            ErrorKind::Corruption,
            format!("{key} is listed but missing"),
        ),
        e => store_error(&format!("fetching {key}"), e),
    };
    let b = bucket
        .store()
        .get_range(key, offset..offset + len)
        .await
        .map_err(missing)?;
    Ok(b.to_vec())
}

/// A store segment's table of contents: one ranged GET, two for a table
/// longer than [`TOC_PROBE`].
pub(crate) async fn read_toc(bucket: &Bucket, key: &Path) -> Result<StoreToc> {
    let head = bucket
        .store()
        .get_range(key, 0..TOC_PROBE)
        .await
        .map_err(|e| store_error(&format!("reading the table of {key}"), e))?;
    let head = head.to_vec();
    if head.len() < STORE_HEADER_FIXED {
        return Err(Error::new(
            ErrorKind::Corruption,
            format!("{key}: {} bytes, too short for a store segment", head.len()),
        ));
    }
    let need = store_header_len(&head)?;
    let bytes = if need as usize <= head.len() {
        head
    } else {
        get_range(bucket, key, 0, need).await?
    };
    Ok(read_store_toc(&bytes)?)
}

/// The per-object segments `seg` stands for, in commit order: the file
/// itself, one run of a store segment, or every run an index lists.
pub(crate) async fn segment_blobs(
    bucket: &Bucket,
    id: &ObjectId,
    seg: &SegmentRef,
) -> Result<Vec<Vec<u8>>> {
    match seg.source {
        SegmentSource::File => Ok(vec![super::restore::fetch(bucket, &seg.key).await?]),
        SegmentSource::Packed { offset, len } => {
            Ok(vec![get_range(bucket, &seg.key, offset, len).await?])
        }
        SegmentSource::Index { skip_through } => {
            let bytes = super::restore::fetch(bucket, &seg.key).await?;
            let ix = decode_index(&bytes)?;
            if ix.object != *id
                || ix.first_seq() != Some(seg.first)
                || ix.last_seq() != Some(seg.last)
            {
                return Err(Error::new(
                    ErrorKind::Corruption,
                    format!("{}: the index does not hold what its key says", seg.key),
                ));
            }
            let layout = bucket.layout().clone();
            let wanted = ix
                .entries
                .into_iter()
                .filter(move |e| skip_through.is_none_or(|b| e.last > b));
            futures_util::stream::iter(wanted.map(|e| {
                let key = layout.store_segment(&ix.stream, e.gen);
                async move { get_range(bucket, &key, e.offset, e.len).await }
            }))
            .buffered(RUN_FETCHES)
            .try_collect()
            .await
        }
    }
}

/// The first bytes of the first per-object segment `seg` stands for (its
/// header), without fetching the rest.
pub(crate) async fn segment_head(bucket: &Bucket, seg: &SegmentRef, len: u64) -> Result<Vec<u8>> {
    match seg.source {
        SegmentSource::File => get_range(bucket, &seg.key, 0, len.min(seg.size)).await,
        SegmentSource::Packed { offset, len: l } => {
            get_range(bucket, &seg.key, offset, len.min(l)).await
        }
        SegmentSource::Index { skip_through } => {
            let ix = decode_index(&super::restore::fetch(bucket, &seg.key).await?)?;
            let mut wanted = ix
                .entries
                .iter()
                .filter(|e| skip_through.is_none_or(|b| e.last > b));
            let e = wanted.next().ok_or_else(|| {
                Error::new(
                    ErrorKind::Corruption,
                    format!("{}: an empty index", seg.key),
                )
            })?;
            let key = bucket.layout().store_segment(&ix.stream, e.gen);
            get_range(bucket, &key, e.offset, len.min(e.len)).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(covered: &[(u64, u64, u64)], opens: &[(u64, u64)], ends: &[(u64, u64)]) -> StreamView {
        StreamView {
            covered: covered
                .iter()
                .map(|&(from, through, first)| Covered {
                    from,
                    through,
                    first,
                })
                .collect(),
            opens: opens.to_vec(),
            ends: ends.to_vec(),
        }
    }

    #[test]
    fn gaps_are_what_no_index_covers() {
        // An open span, indexed through gen 9: scan from 10 on.
        assert_eq!(
            gaps(&view(&[(3, 9, 1)], &[(3, 1)], &[]), None),
            vec![(10, u64::MAX)]
        );
        // Ended at gen 9 and covered: nothing to scan.
        assert!(gaps(&view(&[(3, 9, 1)], &[(3, 1)], &[(9, 5)]), None).is_empty());
        // A failed index in the middle: that part only.
        assert_eq!(
            gaps(&view(&[(3, 4, 1), (8, 9, 4)], &[(3, 1)], &[(9, 5)]), None),
            vec![(5, 7)]
        );
        // ...unless what follows starts at or below base+1.
        assert!(gaps(
            &view(&[(3, 4, 1), (8, 9, 4)], &[(3, 1)], &[(9, 5)]),
            Some(3)
        )
        .is_empty());
        // A span wholly at or below base is skipped.
        assert!(gaps(&view(&[], &[(3, 1)], &[(9, 5)]), Some(5)).is_empty());
        assert_eq!(
            gaps(&view(&[], &[(3, 1)], &[(9, 5)]), Some(4)),
            vec![(3, 9)]
        );
        // Two spans: the second one's tail.
        assert_eq!(
            gaps(
                &view(&[(3, 9, 1), (20, 22, 6)], &[(3, 1), (20, 6)], &[(9, 5)]),
                None
            ),
            vec![(23, u64::MAX)]
        );
        // A span from gen 0 with nothing indexed.
        assert_eq!(gaps(&view(&[], &[(0, 1)], &[]), None), vec![(0, u64::MAX)]);
    }
}
