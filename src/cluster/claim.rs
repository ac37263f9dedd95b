//! Taking an object, and checking before each acknowledgement that it is
//! still ours.
//!
//! A claim is one conditional PUT of the ownership record: `Create` when
//! the object has none, `Update` with the etag just read when its owner's
//! lease has lapsed (or it is our own older incarnation). Each claim takes
//! a new epoch above every epoch in the bucket, so a writer that lost the
//! object can only add segments under an epoch nobody restores from.

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use std::sync::Arc;

use super::record::{FenceRecord, OwnerRecord};
use super::{get_record, random_u64, read_lease_at, Cluster};
use crate::clock::Clock;
use crate::error::{Error, ErrorKind, Result};
use crate::id::ObjectId;
use crate::pitr::bucket::store_error;
use crate::pitr::history::load_history;
use crate::pitr::keys::KeyKind;
use crate::pitr::{Bookmark, Bucket};
use crate::retry::{Backoff, Step};

/// What opening an object in cluster mode must do.
#[derive(Debug, Clone)]
pub(crate) struct Activation {
    /// The epoch this host writes.
    pub(crate) epoch: u64,
    /// Whether the claim took a new epoch (else it continues its own).
    pub(crate) new_epoch: bool,
    /// For a new epoch: the commit to rebuild the object from, if the
    /// bucket has any.
    pub(crate) source: Option<Bookmark>,
    /// The object had no ownership record: this is its first claim, and
    /// local files may predate cluster mode.
    pub(crate) first_claim: bool,
    pub(crate) fence: Fence,
}

/// Held by an object's shipper: the identity it must still have when a
/// commit is acknowledged.
#[derive(Clone)]
pub(crate) struct Fence {
    /// Weak: upload tasks hold fences, and must not keep the host alive.
    cluster: std::sync::Weak<Cluster>,
    id: ObjectId,
    incarnation: String,
    generation: u64,
    epoch: u64,
}

impl std::fmt::Debug for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fence")
            .field("incarnation", &self.incarnation)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl Fence {
    /// Cheap local check: the host still holds its lease under the
    /// generation this object was opened in.
    pub(crate) fn usable(&self) -> bool {
        self.cluster
            .upgrade()
            .is_some_and(|c| c.holds(self.generation))
    }

    pub(crate) fn error(&self) -> Error {
        Error::new(
            ErrorKind::Fenced,
            format!(
                "object {}: this host's lease lapsed or the object was taken over; \
                 nothing after that was acknowledged",
                self.id
            ),
        )
    }

    /// The acknowledgement rule: called after a PUT has landed, before the
    /// commits in it are acknowledged. One read covers every commit of the
    /// PUT, of every object of this incarnation in it (see
    /// [`Fence::confirm_incarnation`] and [`Fence::confirm_owned`]).
    pub(crate) async fn confirm(&self) -> Result<()> {
        self.confirm_incarnation().await?;
        self.confirm_owned()
    }

    /// The bucket half of the rule, the same for every object of one
    /// incarnation: the incarnation's fence record must not exist. A
    /// takeover creates it before it changes an ownership record naming
    /// us, and lists the object's history only after that, so whatever we
    /// PUT before reading no record is seen by the next owner. Finding the
    /// record ends the incarnation (`Cluster::fenced_by_peer`).
    pub(crate) async fn confirm_incarnation(&self) -> Result<()> {
        if !self.usable() {
            return Err(self.error());
        }
        let Some(cluster) = self.cluster.upgrade() else {
            return Err(self.error());
        };
        let bucket = &cluster.bucket;
        let key = bucket.layout().fence(&self.incarnation);
        let tried = Backoff::BUCKET
            .run(&*cluster.clock, |_| async {
                match bucket.store().head(&key).await {
                    Ok(_) => Ok(Step::Done(true)),
                    Err(object_store::Error::NotFound { .. }) => Ok(Step::Done(false)),
                    Err(e) => Ok(Step::Retry(store_error("reading a fence record", e))),
                }
            })
            .await?;
        match tried {
            Ok(false) => Ok(()),
            Ok(true) => {
                cluster.fenced_by_peer(&self.incarnation);
                Err(Error::new(
                    ErrorKind::Fenced,
                    format!(
                        "object {}: this host's incarnation {} has a fence record (another \
                         host took over one of its objects); nothing after that was acknowledged",
                        self.id, self.incarnation
                    ),
                ))
            }
            Err(e) => Err(e),
        }
    }

    /// The local half, per object, checked after the bucket half: this
    /// incarnation still holds the object in this epoch. A claim by this
    /// same incarnation (a point-in-time restore) drops the entry before
    /// it changes the record, and no other host changes a record naming us
    /// without the fence record the bucket half reads.
    pub(crate) fn confirm_owned(&self) -> Result<()> {
        let Some(cluster) = self.cluster.upgrade() else {
            return Err(self.error());
        };
        let st = cluster.lock();
        let ours = st.incarnation == self.incarnation
            && st.generation == self.generation
            && st.owned.get(&self.id) == Some(&self.epoch);
        drop(st);
        if ours && self.usable() {
            Ok(())
        } else {
            Err(self.error())
        }
    }

    /// Groups fences that share an incarnation, so a batch makes one read
    /// per incarnation (`confirm_incarnation`).
    pub(crate) fn same_incarnation(&self, other: &Fence) -> bool {
        self.incarnation == other.incarnation && self.generation == other.generation
    }
}

/// Marks incarnation `victim` fenced (create-only; an existing mark is as
/// good). Must land before any ownership record naming `victim` changes.
async fn mark_fenced(bucket: &Bucket, clock: &dyn Clock, victim: &str, by: &str) -> Result<()> {
    let key = bucket.layout().fence(victim);
    let body = PutPayload::from(
        FenceRecord {
            host: victim.to_string(),
            by: by.to_string(),
            at_ms: clock.now_ms(),
        }
        .to_json(),
    );
    let tried = Backoff::BUCKET
        .run(clock, |_| async {
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            match bucket.store().put_opts(&key, body.clone(), opts).await {
                Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(Step::Done(())),
                Err(e) => Ok(Step::Retry(store_error("marking an incarnation fenced", e))),
            }
        })
        .await?;
    tried
}

/// Reads the ownership record and its version.
pub(crate) async fn read_owner(
    bucket: &Bucket,
    id: &ObjectId,
) -> Result<Option<(OwnerRecord, UpdateVersion)>> {
    let key = bucket.layout().owner(id);
    let Some((bytes, meta)) = get_record(bucket, &key, "reading an ownership record").await? else {
        return Ok(None);
    };
    let ver = UpdateVersion {
        e_tag: meta.e_tag,
        version: meta.version,
    };
    Ok(Some((OwnerRecord::from_json(&bytes)?, ver)))
}

/// Highest epoch the bucket has a directory for.
async fn max_epoch(bucket: &Bucket, id: &ObjectId) -> Result<u64> {
    let layout = bucket.layout();
    let top = bucket.list_dir(&layout.object(id)).await?;
    Ok(top
        .dirs
        .iter()
        .filter_map(|d| layout.parse(d).ok())
        .filter(|p| p.kind == KeyKind::Epoch && p.object == *id)
        .map(|p| p.epoch)
        .max()
        .unwrap_or(0))
}

/// A conditional PUT of an ownership record. `Ok(true)` if this claim's
/// record is in place, `Ok(false)` if another claim won. A PUT whose
/// outcome is unknown (timeout, lost response) is retried; the retry's
/// failed precondition is then resolved by reading the record back and
/// comparing the claim id.
async fn put_record(
    bucket: &Bucket,
    clock: &dyn Clock,
    key: &Path,
    rec: &OwnerRecord,
    mode: PutMode,
) -> Result<bool> {
    let store = bucket.store();
    let json = PutPayload::from(rec.to_json());
    let tried = Backoff::BUCKET
        .run(clock, |_| async {
            let opts = PutOptions {
                mode: mode.clone(),
                ..PutOptions::default()
            };
            match store.put_opts(key, json.clone(), opts).await {
                Ok(_) => Ok(Step::Done(true)),
                Err(object_store::Error::AlreadyExists { .. })
                | Err(object_store::Error::Precondition { .. }) => {
                    match read_owner(bucket, &rec_id(key)?).await? {
                        Some((now, _)) => Ok(Step::Done(now.claim == rec.claim)),
                        None => Ok(Step::Done(false)),
                    }
                }
                Err(e) => Ok(Step::Retry(e)),
            }
        })
        .await?;
    let last = match tried {
        Ok(won) => return Ok(won),
        Err(last) => last,
    };
    // Unknown outcome after every attempt: the record says.
    match read_owner(bucket, &rec_id(key)?).await {
        Ok(Some((now, _))) if now.claim == rec.claim => Ok(true),
        _ => Err(Error::context(
            ErrorKind::Io,
            format_args!("claiming {key} failed"),
            last,
        )),
    }
}

fn rec_id(key: &Path) -> Result<ObjectId> {
    let last = key.filename().unwrap_or("");
    ObjectId::from_hex(last).map_err(|_| Error::invalid(format!("{key} is not an ownership key")))
}

impl Cluster {
    /// Takes `id` for this host, or says who has it. `restore` asks for a
    /// new epoch rebuilt from that commit (a point-in-time restore).
    pub(crate) fn acquire(
        self: &Arc<Self>,
        id: ObjectId,
        restore: Option<Bookmark>,
    ) -> Result<Activation> {
        let me = self.clone();
        self.spawner
            .block_on(async move { me.acquire_async(id, restore).await })
    }

    async fn acquire_async(
        self: Arc<Self>,
        id: ObjectId,
        restore: Option<Bookmark>,
    ) -> Result<Activation> {
        let bucket = self.bucket.clone();
        let key = bucket.layout().owner(&id);
        for _ in 0..4 {
            let (inc, generation, owned) = {
                let mut st = self.lock();
                if !self.valid(&st) {
                    return Err(self.fenced_error("cannot take objects"));
                }
                if restore.is_none() {
                    let now = self.clock.now_ms();
                    match st.routes.get(&id) {
                        Some((addr, until)) if now < *until => {
                            return Err(Error::not_owner(
                                addr,
                                format!("object {id} is owned by the live host at {addr}"),
                            ));
                        }
                        Some(_) => {
                            st.routes.remove(&id);
                        }
                        None => {}
                    }
                }
                (
                    st.incarnation.clone(),
                    st.generation,
                    st.owned.get(&id).copied(),
                )
            };
            let fence = |epoch| Fence {
                cluster: Arc::downgrade(&self),
                id,
                incarnation: inc.clone(),
                generation,
                epoch,
            };
            let current = read_owner(&bucket, &id).await?;
            let mode = match &current {
                Some((rec, _))
                    if rec.host == inc && owned == Some(rec.epoch) && restore.is_none() =>
                {
                    return Ok(Activation {
                        epoch: rec.epoch,
                        new_epoch: false,
                        source: None,
                        first_claim: false,
                        fence: fence(rec.epoch),
                    });
                }
                Some((rec, ver)) => {
                    if rec.host != inc {
                        let lease =
                            read_lease_at(&bucket, &bucket.layout().host(&rec.host)).await?;
                        if let Some(l) = lease.filter(|l| l.live_at(self.clock.now_ms())) {
                            // Trust the route for a quarter TTL at most:
                            // the owner may die, and we retake it then.
                            let until = self.clock.now_ms() + l.ttl_ms / 4;
                            self.lock().routes.insert(id, (l.addr.clone(), until));
                            if restore.is_some() {
                                return Err(Error::not_owner(
                                    &l.addr,
                                    format!(
                                        "object {id} is owned by live host {}; restore it there",
                                        l.host
                                    ),
                                ));
                            }
                            return Err(Error::not_owner(
                                &l.addr,
                                format!(
                                    "object {id} is owned by live host {} at {}",
                                    l.host, l.addr
                                ),
                            ));
                        }
                    }
                    (rec.epoch, PutMode::Update(ver.clone()))
                }
                None => (0, PutMode::Create),
            };
            let (prev_epoch, mode) = mode;
            match &current {
                // Taking it from another incarnation: fence that one first,
                // so that nothing it PUTs after our listing is acknowledged.
                Some((rec, _)) if rec.host != inc => {
                    mark_fenced(&bucket, &*self.clock, &rec.host, &inc).await?;
                }
                // Our own record, in a new epoch (a restore): the handle of
                // the old epoch must stop acknowledging before it changes.
                Some(_) => {
                    self.lock().owned.remove(&id);
                }
                None => {}
            }
            let epoch = prev_epoch.max(max_epoch(&bucket, &id).await?) + 1;
            let rec = OwnerRecord {
                host: inc.clone(),
                addr: self.cfg.advertise.clone(),
                epoch,
                claim: format!("{:016x}", random_u64()?),
                since_ms: self.clock.now_ms(),
            };
            if !put_record(&bucket, &*self.clock, &key, &rec, mode).await? {
                continue;
            }
            // Ours. Everything acknowledged under the previous epoch was
            // in the bucket before the record changed, so a listing now
            // sees it.
            let source = match restore {
                Some(b) => Some(b),
                None => load_history(&bucket, &id).await?.latest(),
            };
            {
                let mut st = self.lock();
                if st.generation != generation {
                    return Err(self.fenced_error("lease lapsed while taking an object"));
                }
                st.owned.insert(id, epoch);
            }
            let first_claim = current.is_none();
            tracing::info!(object = %id, epoch, from = ?current.map(|(r, _)| r.host), "took object");
            return Ok(Activation {
                epoch,
                new_epoch: true,
                source,
                first_claim,
                fence: fence(epoch),
            });
        }
        Err(Error::new(
            ErrorKind::Locked,
            format!("object {id} changed hands repeatedly while this host tried to take it; retry"),
        ))
    }

    /// The epoch this incarnation claimed `id` in, if it did.
    pub(crate) fn owned_epoch(&self, id: &ObjectId) -> Option<u64> {
        self.lock().owned.get(id).copied()
    }

    /// Forgets `id` (after a failed open), so the next open claims again.
    pub(crate) fn forget(&self, id: &ObjectId) {
        self.lock().owned.remove(id);
    }
}
