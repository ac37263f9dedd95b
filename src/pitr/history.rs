//! What the bucket holds for one object: its epochs (timelines), each
//! epoch's manifest, snapshots and segments, and how a wall-clock time
//! maps to a commit.

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use serde::{Deserialize, Serialize};

use super::bucket::store_error;
use super::keys::{Bookmark, KeyKind};
use super::segment::{read_segment_header, SegmentReader};
use super::snapshot::read_snapshot_header;
use super::Bucket;
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;
use crate::retry::{Backoff, Step};

/// Written once when an epoch starts (create-only, never deleted): where
/// the timeline came from and when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manifest {
    pub epoch: u64,
    /// The commit this timeline was restored from, if it was.
    pub parent: Option<Bookmark>,
    /// Wall time the epoch began, ms since the Unix epoch.
    pub started_ms: u64,
}

/// A manifest as stored: the parent as its bookmark's text.
#[derive(Serialize, Deserialize)]
struct ManifestJson {
    epoch: u64,
    #[serde(default)]
    parent: Option<String>,
    started_ms: u64,
}

impl Manifest {
    fn to_json(self) -> Vec<u8> {
        let m = ManifestJson {
            epoch: self.epoch,
            parent: self.parent.map(|b| b.to_string()),
            started_ms: self.started_ms,
        };
        serde_json::to_vec(&m).expect("a record of strings and integers serializes")
    }

    fn from_json(bytes: &[u8]) -> Result<Manifest> {
        let bad = || Error::new(ErrorKind::Corruption, "epoch manifest is malformed");
        let m: ManifestJson = serde_json::from_slice(bytes)
            .map_err(|e| Error::context(ErrorKind::Corruption, "epoch manifest is malformed", e))?;
        let parent = match m.parent {
            Some(s) => Some(s.parse::<Bookmark>().map_err(|_| bad())?),
            None => None,
        };
        Ok(Manifest {
            epoch: m.epoch,
            parent,
            started_ms: m.started_ms,
        })
    }
}

/// A segment as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRef {
    /// The file to read: the segment itself, a store segment, or an index.
    pub key: Path,
    pub first: u64,
    pub last: u64,
    pub size: u64,
    pub source: SegmentSource,
}

/// Where a segment's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentSource {
    /// A per-object segment file of its own (`segments/`, round 1's layout).
    File,
    /// One object's run inside a store segment, found by its table of
    /// contents.
    Packed { offset: u64, len: u64 },
    /// An object index (`index/`): its runs in store segments, fetched with
    /// one ranged GET each. Runs that end at or below `skip_through` (the
    /// epoch's oldest snapshot when it was listed) are not fetched: nothing
    /// needs them, and the store's log GC may already have deleted them.
    Index { skip_through: Option<u64> },
}

/// A snapshot as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRef {
    pub key: Path,
    pub seq: u64,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochHistory {
    pub epoch: u64,
    pub manifest: Option<Manifest>,
    pub snapshots: Vec<SnapshotRef>,
    pub segments: Vec<SegmentRef>,
}

impl EpochHistory {
    /// Highest sequence number stored in this epoch.
    pub fn last_seq(&self) -> Option<u64> {
        let s = self.segments.iter().map(|s| s.last).max();
        let n = self.snapshots.iter().map(|s| s.seq).max();
        s.max(n)
    }

    /// Lowest sequence number restorable in this epoch (its oldest snapshot).
    pub fn first_seq(&self) -> Option<u64> {
        self.snapshots.iter().map(|s| s.seq).min()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    pub object: ObjectId,
    /// Ascending by epoch.
    pub epochs: Vec<EpochHistory>,
}

impl History {
    pub fn epoch(&self, epoch: u64) -> Option<&EpochHistory> {
        self.epochs.iter().find(|e| e.epoch == epoch)
    }

    /// The newest commit in the newest epoch.
    pub fn latest(&self) -> Option<Bookmark> {
        self.epochs
            .iter()
            .rev()
            .find_map(|e| e.last_seq().map(|s| Bookmark::new(e.epoch, s)))
    }
}

/// Lists everything stored for `id`: a few LISTs, no GETs except manifests.
pub async fn load_history(bucket: &Bucket, id: &ObjectId) -> Result<History> {
    let layout = bucket.layout();
    let top = bucket.list_dir(&layout.object(id)).await?;
    let mut epochs = Vec::new();
    for dir in &top.dirs {
        let Ok(parsed) = layout.parse(dir) else {
            continue;
        };
        if parsed.kind != KeyKind::Epoch || parsed.object != *id {
            continue;
        }
        epochs.push(load_epoch(bucket, id, parsed.epoch).await?);
    }
    epochs.sort_by_key(|e| e.epoch);
    Ok(History {
        object: *id,
        epochs,
    })
}

pub(crate) async fn load_epoch(bucket: &Bucket, id: &ObjectId, epoch: u64) -> Result<EpochHistory> {
    let layout = bucket.layout();
    let mut out = EpochHistory {
        epoch,
        manifest: None,
        snapshots: Vec::new(),
        segments: Vec::new(),
    };
    for meta in bucket.list_dir(&layout.segments(id, epoch)).await?.objects {
        if let Ok(p) = layout.parse(&meta.location) {
            if let KeyKind::Segment { first, last } = p.kind {
                out.segments.push(SegmentRef {
                    key: meta.location.clone(),
                    first,
                    last,
                    size: meta.size,
                    source: SegmentSource::File,
                });
            }
        }
    }
    for meta in bucket.list_dir(&layout.snapshots(id, epoch)).await?.objects {
        if let Ok(p) = layout.parse(&meta.location) {
            if let KeyKind::Snapshot { seq } = p.kind {
                out.snapshots.push(SnapshotRef {
                    key: meta.location.clone(),
                    seq,
                    size: meta.size,
                });
            }
        }
    }
    out.snapshots.sort_by_key(|s| s.seq);
    let base = out.snapshots.first().map(|s| s.seq);
    out.segments
        .extend(super::shared_log::load_shared(bucket, id, epoch, base).await?);
    out.segments.sort_by_key(|s| (s.first, s.last));
    match bucket.store().get(&layout.manifest(id, epoch)).await {
        Ok(r) => {
            let bytes = r
                .bytes()
                .await
                .map_err(|e| store_error("reading a manifest", e))?;
            out.manifest = Some(Manifest::from_json(&bytes)?);
        }
        Err(object_store::Error::NotFound { .. }) => {}
        Err(e) => return Err(store_error("reading a manifest", e)),
    }
    Ok(out)
}

/// Writes an epoch's manifest, create-only, retrying errors whose outcome
/// is unknown. An existing one is fine (a retried start, or an attempt
/// whose answer was lost): only the owner of an epoch writes its manifest.
pub(crate) async fn write_manifest(
    bucket: &Bucket,
    clock: &dyn Clock,
    id: &ObjectId,
    m: Manifest,
) -> Result<()> {
    let key = bucket.layout().manifest(id, m.epoch);
    let json = PutPayload::from(m.to_json());
    let tried = Backoff::BUCKET
        .run(clock, |_| async {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            match bucket.store().put_opts(&key, json.clone(), opts).await {
                Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(Step::Done(())),
                Err(e) => Ok(Step::Retry(e)),
            }
        })
        .await?;
    tried.map_err(|e| store_error("writing an epoch manifest", e))
}

async fn get_range(store: &dyn ObjectStore, key: &Path, len: u64, size: u64) -> Result<Vec<u8>> {
    let end = len.min(size);
    let b = store
        .get_range(key, 0..end)
        .await
        .map_err(|e| store_error("reading a header", e))?;
    Ok(b.to_vec())
}

/// The last commit at or before `t_ms`, on the timeline that was live at
/// that time.
pub async fn bookmark_for_time(bucket: &Bucket, history: &History, t_ms: u64) -> Result<Bookmark> {
    let store = bucket.store().as_ref();
    // The live timeline at t: the newest epoch that had started by then.
    let Some(ep) = history
        .epochs
        .iter()
        .rev()
        .find(|e| e.manifest.map_or(0, |m| m.started_ms) <= t_ms && e.first_seq().is_some())
    else {
        return Err(Error::invalid(format!(
            "no restorable state at or before {t_ms} ms: the history starts later"
        )));
    };
    // Binary search the segments (by their header's first commit time).
    let segs = &ep.segments;
    let (mut lo, mut hi) = (0usize, segs.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        let head = super::shared_log::segment_head(bucket, &segs[mid], 128).await?;
        let h = read_segment_header(&head)?;
        if h.first_time_ms <= t_ms {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo > 0 {
        let seg = &segs[lo - 1];
        let mut best = None;
        'blobs: for bytes in super::shared_log::segment_blobs(bucket, &history.object, seg).await? {
            let mut r = SegmentReader::new(&bytes)?;
            while let Some(m) = r.skip_record() {
                let m = m?;
                if m.commit.commit_time_ms <= t_ms {
                    best = Some(m.commit.seq);
                } else {
                    break 'blobs;
                }
            }
        }
        if let Some(seq) = best {
            return Ok(Bookmark::new(ep.epoch, seq));
        }
    }
    // Before any segment of the epoch: the newest snapshot at or before t.
    for snap in ep.snapshots.iter().rev() {
        let head = get_range(store, &snap.key, 128, snap.size).await?;
        let h = read_snapshot_header(&head)?;
        if h.commit.commit_time_ms <= t_ms {
            return Ok(Bookmark::new(ep.epoch, snap.seq));
        }
    }
    Err(Error::invalid(format!(
        "no restorable state at or before {t_ms} ms in epoch {}",
        ep.epoch
    )))
}
