//! `verify`: reads every snapshot and segment of an object, checks every
//! CRC and the continuity of each epoch's log, and says what is restorable.

use super::history::load_history;
use super::keys::Bookmark;
use super::restore::fetch;
use super::segment::SegmentReader;
use super::snapshot::SnapshotReader;
use super::Bucket;
use crate::error::Result;
use crate::id::ObjectId;

/// One epoch's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochReport {
    pub epoch: u64,
    /// Oldest and newest restorable commits, if any.
    pub restorable: Option<(Bookmark, Bookmark)>,
    pub snapshots: usize,
    pub segments: usize,
    pub records: u64,
    pub bytes: u64,
    /// Every problem found; empty means the epoch is sound.
    pub problems: Vec<String>,
    /// Commits `(first, last)` with no record, where a later snapshot
    /// takes the log over (a reopen whose WAL no longer met the bucket
    /// bridges so): every later commit restores, these commits only as
    /// part of the snapshot's state. Not a problem.
    pub bridged: Vec<(u64, u64)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub object: ObjectId,
    pub epochs: Vec<EpochReport>,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.epochs.iter().all(|e| e.problems.is_empty())
    }
}

pub async fn verify_object(bucket: &Bucket, id: &ObjectId) -> Result<VerifyReport> {
    let history = load_history(bucket, id).await?;
    let mut epochs = Vec::new();
    for ep in &history.epochs {
        let mut rep = EpochReport {
            epoch: ep.epoch,
            restorable: None,
            snapshots: ep.snapshots.len(),
            segments: ep.segments.len(),
            records: 0,
            bytes: 0,
            problems: Vec::new(),
            bridged: Vec::new(),
        };
        for s in &ep.snapshots {
            let bytes = fetch(bucket, &s.key).await?;
            rep.bytes += bytes.len() as u64;
            let check = SnapshotReader::new(&bytes).and_then(|mut r| {
                r.expect_origin(id, ep.epoch)?;
                for c in r.by_ref() {
                    c?;
                }
                r.finish()
            });
            match check {
                Ok(h) if h.commit.seq == s.seq => {}
                Ok(h) => rep.problems.push(format!(
                    "{}: holds commit {}, key says {}",
                    s.key, h.commit.seq, s.seq
                )),
                Err(e) => rep.problems.push(format!("{}: {e}", s.key)),
            }
        }
        let Some(base) = ep.first_seq() else {
            rep.problems
                .push("no snapshot: nothing in this epoch is restorable".into());
            epochs.push(rep);
            continue;
        };
        // Walk the log from the oldest snapshot, as restore does:
        // overlapping re-uploads are fine, and so is a gap that a snapshot
        // bridges; other gaps are not.
        let mut applied = base;
        let mut ok_until = base;
        let mut broken = false;
        let mut blobs = Vec::new();
        for seg in &ep.segments {
            match super::shared_log::segment_blobs(bucket, id, seg).await {
                Ok(b) => blobs.extend(b.into_iter().map(|b| (seg, b))),
                Err(e) if e.kind() == crate::error::ErrorKind::Corruption => {
                    rep.problems.push(format!("{}: {e}", seg.key));
                    broken = true;
                }
                Err(e) => return Err(e),
            }
        }
        for (seg, bytes) in &blobs {
            rep.bytes += bytes.len() as u64;
            let mut r = match SegmentReader::new(bytes) {
                Ok(r) => r,
                Err(e) => {
                    rep.problems.push(format!("{}: {e}", seg.key));
                    broken = true;
                    continue;
                }
            };
            if let Err(e) = r.expect_origin(id, ep.epoch) {
                rep.problems.push(format!("{}: {e}", seg.key));
                broken = true;
                continue;
            }
            while let Some(m) = r.skip_record() {
                match m {
                    Ok(m) => {
                        rep.records += 1;
                        let seq = m.commit.seq;
                        if seq <= applied {
                            continue;
                        }
                        if seq != applied + 1 && !broken {
                            // The oldest snapshot past what is applied from
                            // which this record follows (or that covers it).
                            let bridge = ep
                                .snapshots
                                .iter()
                                .map(|s| s.seq)
                                .find(|&q| q > applied && q + 1 >= seq);
                            match bridge {
                                Some(q) => {
                                    rep.bridged.push((applied + 1, seq - 1));
                                    applied = q;
                                    ok_until = q;
                                    if seq <= applied {
                                        continue;
                                    }
                                }
                                None => {
                                    rep.problems.push(format!(
                                        "commits {}..{} are missing",
                                        applied + 1,
                                        seq - 1
                                    ));
                                    broken = true;
                                }
                            }
                        }
                        applied = seq;
                        if !broken {
                            ok_until = seq;
                        }
                    }
                    Err(e) => {
                        rep.problems.push(format!("{}: {e}", seg.key));
                        broken = true;
                        break;
                    }
                }
            }
            if let Err(e) = r.finish() {
                if !broken {
                    rep.problems.push(format!("{}: {e}", seg.key));
                    broken = true;
                }
            }
        }
        // A snapshot past the log's end bridges to itself.
        if !broken {
            if let Some(q) = ep
                .snapshots
                .iter()
                .map(|s| s.seq)
                .filter(|&q| q > applied)
                .max()
            {
                if q > applied + 1 {
                    rep.bridged.push((applied + 1, q - 1));
                }
                ok_until = q;
            }
        }
        rep.restorable = Some((
            Bookmark::new(ep.epoch, base),
            Bookmark::new(ep.epoch, ok_until),
        ));
        epochs.push(rep);
    }
    Ok(VerifyReport {
        object: *id,
        epochs,
    })
}
