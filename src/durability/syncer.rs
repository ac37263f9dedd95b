//! The syncer: a small pool of threads that fsync objects' WAL files after
//! commits and raise their durable watermarks.
//!
//! Group commit happens twice over. Within an object, every commit that
//! lands while its fsync runs is covered by the next one. Across objects,
//! several threads fsync different files at once, which lets the file
//! system fold their journal flushes together, so confirmed commits per
//! second grow with the number of busy objects.

use std::fs::File;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam::channel::{unbounded, Receiver, Sender};

use super::watermark::Watermark;
use crate::error::{Error, ErrorKind};

pub(crate) struct Syncer {
    tx: Option<Sender<Arc<Watermark>>>,
    threads: Vec<JoinHandle<()>>,
}

impl Syncer {
    pub(crate) fn start(threads: usize) -> Syncer {
        let (tx, rx) = unbounded::<Arc<Watermark>>();
        let threads = (0..threads.max(1))
            .map(|i| {
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("amber-sync-{i}"))
                    .spawn(move || run(rx))
                    .expect("spawn syncer thread")
            })
            .collect();
        Syncer {
            tx: Some(tx),
            threads,
        }
    }

    /// Records that `seq` is committed (in the WAL, not yet durable) and
    /// makes sure an fsync will cover it.
    pub(crate) fn committed(&self, mark: &Arc<Watermark>, seq: u64) {
        let mut st = mark.lock();
        if seq > st.committed {
            st.committed = seq;
        }
        if st.queued || st.error.is_some() {
            return;
        }
        st.queued = true;
        drop(st);
        if let Some(tx) = &self.tx {
            // Sending fails only after shutdown began, when no thread would
            // run the fsync: fail the ticket rather than leave it hanging.
            if tx.send(mark.clone()).is_err() {
                mark.fail(Error::new(ErrorKind::Closed, "store is shutting down"));
            }
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        // Closing the channel lets each thread drain what is queued and exit.
        self.tx.take();
        let me = std::thread::current().id();
        for t in self.threads.drain(..) {
            // The last store handle may be dropped by a callback running on
            // a syncer thread; a thread cannot join itself.
            if t.thread().id() != me {
                let _ = t.join();
            }
        }
    }
}

fn run(rx: Receiver<Arc<Watermark>>) {
    while let Ok(mark) = rx.recv() {
        let target = {
            let mut st = mark.lock();
            st.queued = false;
            st.committed
        };
        match sync_one(&mark) {
            Ok(()) => mark.advance_local(target),
            Err(e) => mark.fail(e),
        }
    }
}

fn sync_one(mark: &Watermark) -> Result<(), Error> {
    let file = match mark.wal_file.get() {
        Some(f) => f,
        None => {
            let f = File::options()
                .read(true)
                .open(&mark.wal_path)
                .map_err(|e| Error::io(format!("open {}", mark.wal_path.display()), e))?;
            // Another syncer thread may have won the race; either file works.
            let _ = mark.wal_file.set(f);
            mark.wal_file.get().expect("just set")
        }
    };
    crate::fsutil::synced(&mark.wal_path, false, || file.sync_data())
        .map_err(|e| Error::io(format!("fsync {}", mark.wal_path.display()), e))?;
    if !mark.dir_synced.load(Ordering::Acquire) {
        // The WAL and database were created in this directory; their
        // directory entries must be durable too.
        crate::fsutil::sync_dir(&mark.dir_path)?;
        mark.dir_synced.store(true, Ordering::Release);
    }
    Ok(())
}
