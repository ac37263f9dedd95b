//! The store's shared log: one loop ships the pending commits of every
//! object of the store, packed into one store segment per PUT
//! (`pitr/format/store_log.rs`), one PUT in flight. Commits that arrive
//! during a PUT join the next one, so the number of PUTs follows the write
//! rate and the PUT's round trip, not the number of objects.
//!
//! For each object and epoch the loop keeps a *span*: its runs in this
//! store's stream since the handle opened. The first run of a span is
//! PUT together with an `.open` marker under the object's own keys, and
//! is acknowledged only once both landed, so a reader knows which streams
//! to look in even if nothing else of the span reached the bucket. Every
//! `index_interval` (and when the last handle closes) the runs go into an
//! object index, so a restore reads only its own bytes; a closed span
//! gets an `.end` marker after its last index. The reader is
//! `pitr/shared_log.rs`.
//!
//! Snapshots stay per object (`upload.rs`); an object's records wait while
//! its snapshot is in flight, so its remote watermark never passes a
//! snapshot that has not landed. In cluster mode a batch is acknowledged
//! only after its fence check: one read of the fence record per host
//! incarnation in the batch, however many objects it holds, then a local
//! check per object (docs/scale-out.md).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::future::try_join_all;

use super::queue::{ShipInner, ShipState, SnapshotJob};
use super::upload::Uploader;
use super::Shipper;
use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;
use crate::pitr::store_log::{
    encode_index, encode_store_segment, IndexEntry, ObjectIndex, PackedPart, StreamId,
};
use crate::pitr::{Record, SegmentWriter};

/// How often the store's log GC may run (after a snapshot).
const GC_EVERY_MS: u64 = 3600 * 1000;

pub(crate) struct StoreLog {
    stream: StreamId,
    inner: Mutex<LogInner>,
}

#[derive(Default)]
struct LogInner {
    /// Objects with pending records, claimed (`in_log`) and not in a batch.
    ready: Vec<Arc<ShipState>>,
    /// The loop is running.
    running: bool,
    next_gen: u64,
    /// Generation of the newest batch that finished (landed or failed).
    landed_gen: Option<u64>,
    spans: HashMap<(ObjectId, u64), Arc<Span>>,
    last_gc_ms: Option<u64>,
    /// The store is closing: spans end as soon as their handles are gone.
    shutting_down: bool,
}

/// One object's current span of runs in this stream.
struct Span {
    state: Mutex<SpanState>,
    /// Serialises the span's index and `.end` PUTs, so that one index's
    /// coverage starts where the previous one's ended.
    puts: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct SpanState {
    /// Handles of the object open (or still draining) in this store.
    handles: usize,
    /// Generation of the span's first run, once it landed.
    open_gen: Option<u64>,
    /// Where the next index's coverage starts.
    next_from: u64,
    unindexed: Vec<IndexEntry>,
    /// (generation, sequence number) of the newest run that landed.
    last: Option<(u64, u64)>,
    last_index_ms: u64,
    index_busy: bool,
    /// Bumped each time the last handle goes; a lingering span ends only
    /// if no handle came and went since.
    idle_token: u64,
}

/// One object's part of a batch.
struct Part {
    st: Arc<ShipState>,
    epoch: u64,
    records: Vec<Record>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Claims the object for the log loop if it has records to ship and
/// nothing stops them.
fn claim_log(i: &mut ShipInner) -> bool {
    if i.failed || i.in_log || i.snapshot_busy || i.snapshot.is_some() || i.pending.is_empty() {
        return false;
    }
    i.in_log = true;
    true
}

/// Claims the object for a snapshot upload if one is queued and no batch
/// holds its records.
fn claim_snapshot(i: &mut ShipInner) -> bool {
    if i.failed || i.in_log || i.snapshot_busy || i.snapshot.is_none() {
        return false;
    }
    i.snapshot_busy = true;
    true
}

fn drained(i: &ShipInner) -> bool {
    !i.in_log && !i.snapshot_busy && i.pending.is_empty() && i.snapshot.is_none()
}

impl StoreLog {
    /// A new stream, named by 16 random bytes.
    pub(crate) fn new() -> Result<StoreLog> {
        let mut b = [0u8; 16];
        getrandom::fill(&mut b).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("no randomness for the log's stream id: {e}"),
            )
        })?;
        Ok(StoreLog {
            stream: StreamId(b),
            inner: Mutex::new(LogInner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LogInner> {
        lock(&self.inner)
    }

    /// Whether a handle of `id` still ships here: open, or closed with
    /// records or a snapshot not yet landed.
    pub(super) fn shipping(&self, id: ObjectId) -> bool {
        self.lock()
            .spans
            .iter()
            .any(|(k, s)| k.0 == id && lock(&s.state).handles > 0)
    }

    /// A handle of `id` at `epoch` starts shipping here.
    pub(super) fn open_handle(&self, id: ObjectId, epoch: u64) {
        let mut l = self.lock();
        let span = l.spans.entry((id, epoch)).or_insert_with(|| {
            Arc::new(Span {
                state: Mutex::new(SpanState::default()),
                puts: tokio::sync::Mutex::new(()),
            })
        });
        lock(&span.state).handles += 1;
    }

    pub(super) fn enqueue(&self, sh: &Arc<Shipper>, st: &Arc<ShipState>, record: Record) {
        let ready = {
            let mut i = st.lock();
            i.pending.push_back(record);
            claim_log(&mut i)
        };
        if ready {
            self.make_ready(sh, st.clone());
        }
    }

    pub(super) fn enqueue_snapshot(
        &self,
        sh: &Arc<Shipper>,
        st: &Arc<ShipState>,
        job: SnapshotJob,
    ) {
        let start = {
            let mut i = st.lock();
            i.snapshot = Some(job);
            claim_snapshot(&mut i)
        };
        if start {
            spawn_snapshot(sh, st.clone());
        }
    }

    /// The handle owning `st` is gone: once its work is done, its span may
    /// close.
    pub(super) fn closed(&self, sh: &Arc<Shipper>, st: &Arc<ShipState>) {
        st.lock().closing = true;
        self.settle(sh, st);
    }

    fn make_ready(&self, sh: &Arc<Shipper>, st: Arc<ShipState>) {
        let start = {
            let mut l = self.lock();
            l.ready.push(st);
            !std::mem::replace(&mut l.running, true)
        };
        if start {
            let me = sh.clone();
            sh.spawner.spawn_tracked(async move { run(me).await });
        }
    }

    /// After a batch or a snapshot: start what the object needs next, or
    /// let its span go once its closed handle has nothing left.
    fn settle(&self, sh: &Arc<Shipper>, st: &Arc<ShipState>) {
        let (snap, ready, release, epoch) = {
            let mut i = st.lock();
            let snap = claim_snapshot(&mut i);
            let ready = !snap && claim_log(&mut i);
            let release = i.closing && !i.released && (i.failed || drained(&i));
            if release {
                i.released = true;
            }
            (snap, ready, release, i.epoch)
        };
        if snap {
            spawn_snapshot(sh, st.clone());
        }
        if ready {
            self.make_ready(sh, st.clone());
        }
        if release {
            self.release(sh, st.id, epoch);
        }
    }

    /// A handle's work is done. When it was the span's last handle, the
    /// span lingers for `index_interval`, so that an object that hibernates
    /// and wakes often keeps one span (one `.open`, one index a minute)
    /// rather than paying an `.open`, an index and an `.end` per wake.
    fn release(&self, sh: &Arc<Shipper>, id: ObjectId, epoch: u64) {
        let (token, now) = {
            let l = self.lock();
            let Some(span) = l.spans.get(&(id, epoch)) else {
                return;
            };
            let mut s = lock(&span.state);
            s.handles = s.handles.saturating_sub(1);
            if s.handles > 0 {
                return;
            }
            s.idle_token += 1;
            (
                s.idle_token,
                l.shutting_down || sh.cfg.index_interval.is_zero(),
            )
        };
        if now {
            self.end_span(sh, id, epoch, token);
            return;
        }
        let me = sh.clone();
        // Not tracked: a closing store ends its spans itself (`shutdown`).
        sh.spawner.spawn(async move {
            me.clock.sleep(me.cfg.index_interval).await;
            if let Some(log) = &me.log {
                log.end_span(&me, id, epoch, token);
            }
        });
    }

    /// Ends the span unless a handle opened it since `token`: its last
    /// index, then its `.end`.
    fn end_span(&self, sh: &Arc<Shipper>, id: ObjectId, epoch: u64, token: u64) {
        let span = {
            let mut l = self.lock();
            let Some(span) = l.spans.get(&(id, epoch)).cloned() else {
                return;
            };
            let s = lock(&span.state);
            if s.handles > 0 || s.idle_token != token {
                return;
            }
            drop(s);
            // Gone from the map now: a handle opened from here on starts a
            // new span, with its own `.open`, after this one's `.end`.
            l.spans.remove(&(id, epoch));
            span
        };
        if lock(&span.state).open_gen.is_none() {
            return; // nothing of it reached the bucket
        }
        let me = sh.clone();
        sh.spawner.spawn_tracked(async move {
            write_index(&me, id, epoch, &span, true).await;
        });
    }

    /// Indexes `id`'s runs not yet indexed, now: a restore, history or
    /// verify in this process then reads its own byte ranges instead of
    /// the table of every store segment since the last index.
    pub(super) async fn index_now(&self, sh: &Arc<Shipper>, id: ObjectId) {
        let spans: Vec<(u64, Arc<Span>)> = self
            .lock()
            .spans
            .iter()
            .filter(|(k, _)| k.0 == id)
            .map(|(k, s)| (k.1, s.clone()))
            .collect();
        for (epoch, span) in spans {
            if !lock(&span.state).unindexed.is_empty() {
                write_index(sh, id, epoch, &span, false).await;
            }
        }
    }

    /// Object `id` was deleted. Its idle spans end now (with `purge`, they
    /// are dropped unwritten: the history they would index is going).
    pub(super) fn deleted(&self, sh: &Arc<Shipper>, id: ObjectId, purge: bool) {
        let idle: Vec<_> = {
            let mut l = self.lock();
            let keys: Vec<_> = l.spans.keys().filter(|k| k.0 == id).copied().collect();
            let mut out = Vec::new();
            for k in keys {
                let token = {
                    let s = lock(&l.spans[&k].state);
                    (s.handles == 0).then_some(s.idle_token)
                };
                match (token, purge) {
                    (Some(_), true) => {
                        l.spans.remove(&k);
                    }
                    (Some(t), false) => out.push((k, t)),
                    (None, _) => {}
                }
            }
            out
        };
        for ((id, epoch), token) in idle {
            self.end_span(sh, id, epoch, token);
        }
    }

    /// The store is closing: ends every span whose handles are gone now,
    /// and the others as soon as they drain.
    pub(super) fn shutdown(&self, sh: &Arc<Shipper>) {
        let idle: Vec<_> = {
            let mut l = self.lock();
            l.shutting_down = true;
            l.spans
                .iter()
                .filter_map(|(k, span)| {
                    let s = lock(&span.state);
                    (s.handles == 0).then_some((*k, s.idle_token))
                })
                .collect()
        };
        for ((id, epoch), token) in idle {
            self.end_span(sh, id, epoch, token);
        }
    }

    fn span(&self, id: ObjectId, epoch: u64) -> Option<Arc<Span>> {
        self.lock().spans.get(&(id, epoch)).cloned()
    }
}

fn spawn_snapshot(sh: &Arc<Shipper>, st: Arc<ShipState>) {
    let me = sh.clone();
    sh.spawner.spawn_tracked(async move {
        let up = Uploader {
            shipper: me.clone(),
        };
        let mut ok = true;
        while let Some((job, epoch)) = take_snapshot(&st) {
            let _permit = me.sem.acquire().await;
            if let Err(e) = up.upload_snapshot(&st, epoch, job).await {
                st.fail(&e);
                ok = false;
                break;
            }
        }
        st.lock().snapshot_busy = false;
        let log = me.log.as_ref().expect("shared shipping has a log");
        log.settle(&me, &st);
        if ok {
            maybe_gc(&me).await;
        }
    });
}

fn take_snapshot(st: &ShipState) -> Option<(SnapshotJob, u64)> {
    let mut i = st.lock();
    let epoch = i.epoch;
    i.snapshot.take().map(|j| (j, epoch))
}

/// Runs the store's log GC if it has not run within the hour.
async fn maybe_gc(sh: &Arc<Shipper>) {
    let log = sh.log.as_ref().expect("shared shipping has a log");
    let now = sh.clock.now_ms();
    {
        let mut l = log.lock();
        if l.last_gc_ms
            .is_some_and(|t| now.saturating_sub(t) < GC_EVERY_MS)
        {
            return;
        }
        l.last_gc_ms = Some(now);
    }
    // A failed GC costs storage, not data; it runs again in an hour.
    if let Err(e) = crate::pitr::gc_store_log(&sh.bucket, now, sh.cfg.retention).await {
        tracing::warn!(error = %e, "the store's log GC failed");
    }
}

/// The loop: takes every ready object's pending records (up to
/// `max_segment_bytes` in all) into one store segment, PUTs it, and
/// acknowledges them; until no object has anything pending.
async fn run(sh: Arc<Shipper>) {
    let log = sh.log.as_ref().expect("shared shipping has a log");
    // The flush window spaces the batches' starts, not only the first:
    // under a steady load the loop never idles, and a window applied once
    // would leave the PUT rate at one per round trip.
    let flush = sh.cfg.flush_interval;
    let mut wait = flush;
    loop {
        if !wait.is_zero() {
            sh.clock.sleep(wait).await;
        }
        let started = sh.clock.now_ms();
        let ready = {
            let mut l = log.lock();
            if l.ready.is_empty() {
                l.running = false;
                return;
            }
            std::mem::take(&mut l.ready)
        };
        let (batch, later, dropped) = take_batch(ready, sh.cfg.max_segment_bytes);
        if !later.is_empty() {
            let mut l = log.lock();
            l.ready.splice(0..0, later);
        }
        for st in dropped {
            log.settle(&sh, &st);
        }
        if batch.is_empty() {
            continue;
        }
        let gen = ship_batch(&sh, log, &batch).await;
        {
            let mut l = log.lock();
            l.landed_gen = gen.max(l.landed_gen);
        }
        for p in &batch {
            p.st.lock().in_log = false;
            log.settle(&sh, &p.st);
        }
        let spent = Duration::from_millis(sh.clock.now_ms().saturating_sub(started));
        wait = flush.saturating_sub(spent);
    }
}

/// Splits `ready` into this batch's parts, objects left for the next batch
/// (still claimed), and failed objects let go.
fn take_batch(
    ready: Vec<Arc<ShipState>>,
    max_bytes: usize,
) -> (Vec<Part>, Vec<Arc<ShipState>>, Vec<Arc<ShipState>>) {
    let mut bytes = 0usize;
    let (mut batch, mut later, mut dropped) = (Vec::new(), Vec::new(), Vec::new());
    for st in ready {
        let mut i = st.lock();
        if i.failed {
            i.in_log = false;
            drop(i);
            dropped.push(st);
            continue;
        }
        let mut records = Vec::new();
        while let Some(r) = i.pending.front() {
            let len = r.page_data().len();
            if (!batch.is_empty() || !records.is_empty()) && bytes + len > max_bytes {
                break;
            }
            bytes += len;
            records.push(i.pending.pop_front().expect("front exists"));
        }
        let epoch = i.epoch;
        drop(i);
        if records.is_empty() {
            later.push(st);
        } else {
            batch.push(Part { st, epoch, records });
        }
    }
    (batch, later, dropped)
}

/// Encodes, PUTs and acknowledges one batch; on failure every object in it
/// is broken (its commits stay in its WAL, to ship on reopen).
async fn ship_batch(sh: &Arc<Shipper>, log: &StoreLog, batch: &[Part]) -> Option<u64> {
    let gen = {
        let mut l = log.lock();
        let g = l.next_gen;
        // Never reused: a PUT that failed here may still have landed.
        l.next_gen += 1;
        g
    };
    let layout = sh.bucket.layout().clone();
    let mut parts = Vec::with_capacity(batch.len());
    let mut opens = Vec::new();
    let mut encoded = Vec::with_capacity(batch.len());
    for p in batch {
        let first = p.records.first().map(Record::seq).unwrap_or(0);
        let last = p.records.last().map(Record::seq).unwrap_or(0);
        let bytes = (|| {
            let mut w = SegmentWriter::new(p.st.id, p.epoch)?;
            for r in &p.records {
                w.push(r)?;
            }
            w.finish()
        })();
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => {
                p.st.fail(&e.into());
                continue;
            }
        };
        let opens_span = log
            .span(p.st.id, p.epoch)
            .is_none_or(|s| lock(&s.state).open_gen.is_none());
        if opens_span {
            opens.push(layout.span(&p.st.id, p.epoch, &log.stream, gen, first, true));
        }
        encoded.push(&p.st);
        parts.push(PackedPart {
            object: p.st.id,
            epoch: p.epoch,
            first,
            last,
            bytes,
        });
    }
    if parts.is_empty() {
        return Some(gen);
    }
    let now = sh.clock.now_ms();
    let (bytes, toc) = encode_store_segment(log.stream, gen, now, &parts);
    drop(parts);
    let key = layout.store_segment(&log.stream, gen);
    let mut puts = vec![sh.put_new(key, bytes)];
    puts.extend(opens.into_iter().map(|k| sh.put_new(k, Vec::new())));
    if let Err(e) = try_join_all(puts).await {
        for st in encoded {
            st.fail(&e);
        }
        return Some(gen);
    }
    let fenced = confirm_fences(&encoded).await;
    for ((st, e), fenced) in encoded.into_iter().zip(&toc.entries).zip(fenced) {
        if let Err(err) = fenced {
            st.fail(&err);
            continue;
        }
        {
            let mut i = st.lock();
            i.shipped = i.shipped.max(e.last);
            i.log_bytes += e.len;
            st.write_hint(&i);
        }
        st.mark.advance_remote(e.last);
        let Some(span) = log.span(st.id, e.epoch) else {
            continue; // its span closed with a failed handle
        };
        let due = {
            let mut s = lock(&span.state);
            if s.open_gen.is_none() {
                s.open_gen = Some(gen);
                s.next_from = gen;
                s.last_index_ms = now;
            }
            s.unindexed.push(IndexEntry {
                gen,
                offset: e.offset,
                len: e.len,
                first: e.first,
                last: e.last,
            });
            s.last = Some((gen, e.last));
            let interval = sh.cfg.index_interval.as_millis() as u64;
            let due = !s.index_busy && now.saturating_sub(s.last_index_ms) >= interval;
            if due {
                s.index_busy = true;
            }
            due
        };
        if due {
            let (me, id, epoch) = (sh.clone(), st.id, e.epoch);
            sh.spawner.spawn_tracked(async move {
                write_index(&me, id, epoch, &span, false).await;
            });
        }
    }
    Some(gen)
}

/// Cluster mode's acknowledgement rule for a landed batch, per part: one
/// fence-record read per incarnation (every part of it shares the answer),
/// then each object's local check. Parts without a fence pass.
async fn confirm_fences(parts: &[&Arc<ShipState>]) -> Vec<Result<()>> {
    let mut groups: Vec<(&crate::cluster::Fence, Option<Result<()>>)> = Vec::new();
    for st in parts {
        if let Some(f) = &st.fence {
            if !groups.iter().any(|(g, _)| g.same_incarnation(f)) {
                groups.push((f, None));
            }
        }
    }
    for (f, res) in &mut groups {
        *res = Some(f.confirm_incarnation().await);
    }
    parts
        .iter()
        .map(|st| {
            let Some(f) = &st.fence else { return Ok(()) };
            let (_, res) = groups
                .iter()
                .find(|(g, _)| g.same_incarnation(f))
                .expect("every fence has its group");
            match res.as_ref().expect("every group was checked") {
                Ok(()) => f.confirm_owned(),
                Err(e) => Err(e.clone()),
            }
        })
        .collect()
}

/// PUTs an index of the span's runs not yet indexed; with `end`, then the
/// span's `.end` marker. A failed index leaves a part of the span that
/// readers scan for; a failed `.end` leaves the span looking open, which
/// costs readers a scan of the stream's tail, not data.
async fn write_index(sh: &Arc<Shipper>, id: ObjectId, epoch: u64, span: &Span, end: bool) {
    let log = sh.log.as_ref().expect("shared shipping has a log");
    let _serial = span.puts.lock().await;
    let now = sh.clock.now_ms();
    // Coverage runs to the newest batch that finished, not just to this
    // object's last run: no batch at or below it can still add a run of
    // this object (one batch is in flight at a time, and a run is pushed
    // before its batch counts as finished), so a reader of a span that is
    // still open scans only what came after the index, not every store
    // segment since the object last wrote. Read before the span's lock
    // (the log's lock comes first).
    let landed = log.lock().landed_gen;
    let (ix, last) = {
        let mut s = lock(&span.state);
        s.index_busy = false;
        s.last_index_ms = now;
        let entries = std::mem::take(&mut s.unindexed);
        let from = s.next_from;
        let ix = entries
            .last()
            .map(|e| e.gen.max(landed.unwrap_or(0)))
            .map(|through| {
                s.next_from = through + 1;
                ObjectIndex {
                    object: id,
                    epoch,
                    stream: log.stream,
                    from_gen: from,
                    through_gen: through,
                    entries,
                }
            });
        (ix, s.last)
    };
    let layout = sh.bucket.layout();
    if let Some(ix) = ix {
        let (first, last) = (ix.first_seq().unwrap_or(0), ix.last_seq().unwrap_or(0));
        let key = layout.index(
            &id,
            epoch,
            first,
            last,
            &log.stream,
            ix.from_gen,
            ix.through_gen,
        );
        if let Err(e) = sh.put_new(key, encode_index(&ix)).await {
            tracing::warn!(object = %id, error = %e, "could not write an object index");
            return;
        }
    }
    if let (true, Some((gen, seq))) = (end, last) {
        let key = layout.span(&id, epoch, &log.stream, gen, seq, false);
        if let Err(e) = sh.put_new(key, Vec::new()).await {
            tracing::warn!(object = %id, error = %e, "could not close a span of the log");
        }
    }
}
