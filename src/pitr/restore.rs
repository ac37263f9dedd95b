//! The restore engine: the newest snapshot at or before the target, then
//! every record after it, in order, up to the exact target commit. Every
//! CRC is checked by the decoders; sequence numbers must be contiguous.
//! On damage, the error names the last consistent bookmark, and
//! `allow_partial` restores up to it on purpose. Nothing is ever truncated
//! silently.

use std::collections::VecDeque;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path as FsPath;
use std::sync::Arc;

use object_store::ObjectStoreExt;

use super::bucket::store_error;
use super::history::{bookmark_for_time, load_history, History, SegmentRef};
use super::keys::Bookmark;
use super::segment::{Record, SegmentReader};
use super::snapshot::SnapshotReader;
use super::Bucket;
use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;

/// What to restore to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreTarget {
    /// The newest commit in the bucket.
    Latest,
    /// An exact commit.
    Bookmark(Bookmark),
    /// The last commit at or before this time (ms since the Unix epoch).
    Time(u64),
}

/// Progress, reported after the snapshot and after each segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreProgress {
    pub bytes_fetched: u64,
    pub bytes_total: u64,
    pub applied_seq: u64,
    pub target_seq: u64,
}

pub type ProgressFn = Arc<dyn Fn(RestoreProgress) + Send + Sync>;

#[derive(Clone, Default)]
pub struct RestoreOptions {
    /// Restore up to the last consistent commit instead of failing when
    /// the history is damaged.
    pub allow_partial: bool,
    /// Segments fetched ahead of the one being applied.
    pub prefetch: usize,
    pub progress: Option<ProgressFn>,
}

impl std::fmt::Debug for RestoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoreOptions")
            .field("allow_partial", &self.allow_partial)
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}

/// What a restore produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreReport {
    /// The commit the file now holds.
    pub bookmark: Bookmark,
    /// The commit asked for (differs from `bookmark` only when partial).
    pub target: Bookmark,
    pub commit_time_ms: u64,
    pub partial: bool,
    /// Why it stopped early, when partial.
    pub damage: Option<String>,
    pub bytes_fetched: u64,
    pub records_applied: u64,
}

/// Decodes every record of a segment's blobs in order (see
/// `shared_log::segment_blobs`), stopping at the first damage.
fn decode_blobs(blobs: &[Vec<u8>], id: &ObjectId, epoch: u64) -> (Vec<Record>, Option<String>) {
    let mut out = Vec::new();
    for b in blobs {
        let (recs, damage) = decode_all(b, id, epoch);
        out.extend(recs);
        if damage.is_some() {
            return (out, damage);
        }
    }
    (out, None)
}

/// Decodes every record of a segment, checking its origin and every CRC.
/// Returns the records that decoded, and the damage that stopped it.
fn decode_all(bytes: &[u8], id: &ObjectId, epoch: u64) -> (Vec<Record>, Option<String>) {
    let mut r = match SegmentReader::new(bytes) {
        Ok(r) => r,
        Err(e) => return (Vec::new(), Some(e.to_string())),
    };
    if let Err(e) = r.expect_origin(id, epoch) {
        return (Vec::new(), Some(e.to_string()));
    }
    let mut out = Vec::new();
    while let Some(rec) = r.next_record() {
        match rec {
            Ok(rec) => out.push(rec),
            Err(e) => return (out, Some(e.to_string())),
        }
    }
    match r.finish() {
        Ok(_) => (out, None),
        Err(e) => (out, Some(e.to_string())),
    }
}

/// Writes a record's pages, one write per run of consecutive pages (the
/// record keeps pages sorted and contiguous in memory).
fn write_pages(file: &File, rec: &Record, ps: u64) -> std::io::Result<()> {
    let nums = rec.page_numbers();
    let data = rec.page_data();
    let mut i = 0;
    while i < nums.len() {
        let mut j = i + 1;
        while j < nums.len() && nums[j] == nums[j - 1] + 1 {
            j += 1;
        }
        let p = ps as usize;
        file.write_all_at(&data[i * p..j * p], (nums[i] as u64 - 1) * ps)?;
        i = j;
    }
    Ok(())
}

/// Resolves `target` to an exact bookmark.
pub async fn resolve(
    bucket: &Bucket,
    history: &History,
    target: &RestoreTarget,
) -> Result<Bookmark> {
    match target {
        RestoreTarget::Latest => history.latest().ok_or_else(|| {
            Error::invalid(format!(
                "the bucket holds nothing for object {}",
                history.object
            ))
        }),
        RestoreTarget::Bookmark(b) => Ok(*b),
        RestoreTarget::Time(t) => bookmark_for_time(bucket, history, *t).await,
    }
}

/// GETs a whole file of the bucket.
pub(crate) async fn fetch(bucket: &Bucket, key: &object_store::path::Path) -> Result<Vec<u8>> {
    let r = bucket.store().get(key).await.map_err(|e| match e {
        // Listed but gone: the history is damaged (or was collected).
        object_store::Error::NotFound { .. } => Error::new(
            ErrorKind::Corruption,
            format!("{key} is listed but missing"),
        ),
        e => store_error(&format!("fetching {key}"), e),
    })?;
    Ok(r.bytes()
        .await
        .map_err(|e| store_error(&format!("fetching {key}"), e))?
        .to_vec())
}

/// Rebuilds object `id` at `target` into a new file at `out` (a plain
/// SQLite database in WAL mode, without a WAL). `out` must not exist.
pub async fn restore_to_file(
    bucket: &Bucket,
    id: &ObjectId,
    target: &RestoreTarget,
    out: &FsPath,
    opts: &RestoreOptions,
) -> Result<RestoreReport> {
    let history = load_history(bucket, id).await?;
    let want = resolve(bucket, &history, target).await?;
    let ep = history.epoch(want.epoch()).ok_or_else(|| {
        Error::invalid(format!(
            "bookmark {want}: the bucket has no epoch {}",
            want.epoch()
        ))
    })?;
    let snap = ep
        .snapshots
        .iter()
        .rev()
        .find(|s| s.seq <= want.seq())
        .ok_or_else(|| {
            Error::invalid(format!(
                "bookmark {want} is before the oldest snapshot of its epoch (outside retention)"
            ))
        })?;
    let last = ep.last_seq().unwrap_or(0);
    if want.seq() > last {
        return Err(Error::invalid(format!(
            "bookmark {want} is past the newest commit in the bucket ({})",
            Bookmark::new(ep.epoch, last)
        )));
    }
    // Segments that hold anything in (snapshot, target], in order.
    let segs: Vec<SegmentRef> = ep
        .segments
        .iter()
        .filter(|s| s.last > snap.seq && s.first <= want.seq())
        .cloned()
        .collect();
    let bytes_total = snap.size + segs.iter().map(|s| s.size).sum::<u64>();
    let file = File::options()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(|e| Error::io(format!("create {}", out.display()), e))?;
    let report = |bytes_fetched, applied_seq| {
        if let Some(p) = &opts.progress {
            p(RestoreProgress {
                bytes_fetched,
                bytes_total,
                applied_seq,
                target_seq: want.seq(),
            });
        }
    };

    // The snapshot.
    let snap_bytes = fetch(bucket, &snap.key).await?;
    let mut fetched = snap_bytes.len() as u64;
    let mut reader = SnapshotReader::new(&snap_bytes)?;
    reader.expect_origin(id, ep.epoch)?;
    let header = reader.header().clone();
    let ps = header.commit.page_size as u64;
    for chunk in reader.by_ref() {
        let c = chunk?;
        file.write_all_at(&c.data, c.offset)
            .map_err(|e| Error::io(format!("write {}", out.display()), e))?;
    }
    reader.finish()?;
    let mut applied = header.commit.seq;
    let mut applied_time = header.commit.commit_time_ms;
    let mut db_pages = header.commit.db_size_pages;
    let mut records = 0u64;
    report(fetched, applied);

    // The log: fetched and decoded ahead (CRCs checked off this thread),
    // applied in order.
    let prefetch = opts.prefetch.max(1);
    type Fetched = Result<(u64, Vec<Record>, Option<String>)>;
    let mut queue: VecDeque<tokio::task::JoinHandle<Fetched>> = VecDeque::new();
    let mut next = 0usize;
    let mut damage: Option<String> = None;
    'segments: while next < segs.len() || !queue.is_empty() {
        while queue.len() < prefetch && next < segs.len() {
            let b = bucket.clone();
            let seg = segs[next].clone();
            let (oid, epoch) = (*id, ep.epoch);
            queue.push_back(tokio::spawn(async move {
                let blobs = super::shared_log::segment_blobs(&b, &oid, &seg).await?;
                let len = blobs.iter().map(|b| b.len() as u64).sum();
                let decoded =
                    tokio::task::spawn_blocking(move || decode_blobs(&blobs, &oid, epoch))
                        .await
                        .map_err(|e| {
                            Error::new(ErrorKind::Io, format!("decode task failed: {e}"))
                        })?;
                Ok((len, decoded.0, decoded.1))
            }));
            next += 1;
        }
        let Some(h) = queue.pop_front() else { break };
        let (len, decoded, seg_damage) = match h.await {
            Ok(Ok(x)) => x,
            // A transient failure to read is not damage: stop, and let
            // the caller retry the whole restore.
            Ok(Err(e)) if e.kind() == ErrorKind::Io => {
                return Err(Error::new(
                    ErrorKind::Io,
                    format!("restore stopped by a failed read (retry): {e}"),
                ));
            }
            Ok(Err(e)) => {
                damage = Some(format!("segment unreadable: {e}"));
                break;
            }
            Err(e) => {
                damage = Some(format!("fetch task failed: {e}"));
                break;
            }
        };
        fetched += len;
        for rec in decoded {
            if rec.seq() <= applied {
                continue; // an overlapping re-upload
            }
            if rec.seq() > want.seq() {
                break 'segments;
            }
            if rec.seq() != applied + 1 {
                damage = Some(format!(
                    "commit {} is missing (next found: {})",
                    applied + 1,
                    rec.seq()
                ));
                break 'segments;
            }
            write_pages(&file, &rec, ps)
                .map_err(|e| Error::io(format!("write {}", out.display()), e))?;
            applied = rec.seq();
            applied_time = rec.commit_time_ms();
            db_pages = rec.db_size_pages();
            records += 1;
        }
        if let Some(d) = seg_damage {
            if applied < want.seq() {
                damage = Some(d);
                break;
            }
        }
        report(fetched, applied);
    }
    for h in queue {
        h.abort();
    }
    if damage.is_none() && applied < want.seq() {
        damage = Some(format!("the log ends at commit {applied}"));
    }
    let partial = damage.is_some();
    if let Some(d) = &damage {
        if !opts.allow_partial {
            drop(file);
            let _ = std::fs::remove_file(out);
            return Err(Error::new(
                ErrorKind::Corruption,
                format!(
                    "cannot restore {want}: {d}; the last consistent point is {} \
                     (restore it on purpose with allow_partial / --partial)",
                    Bookmark::new(ep.epoch, applied)
                ),
            ));
        }
    }
    file.set_len(db_pages as u64 * ps)
        .and_then(|_| file.sync_all())
        .map_err(|e| Error::io(format!("finish {}", out.display()), e))?;
    Ok(RestoreReport {
        bookmark: Bookmark::new(ep.epoch, applied),
        target: want,
        commit_time_ms: applied_time,
        partial,
        damage,
        bytes_fetched: fetched,
        records_applied: records,
    })
}
