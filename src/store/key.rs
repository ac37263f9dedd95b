//! The store key: 32 random bytes that map object names to ids. With a
//! bucket, the bucket keeps a copy, created once with a conditional PUT, so
//! that a store rebuilt from the bucket alone maps names to the same ids.

use std::fs;
use std::path::Path;

use crate::error::{Error, ErrorKind, Result};
use crate::fsutil;
use crate::pitr::bucket::store_error;
use crate::ship::Shipper;

const KEY_FILE: &str = "store.key";

/// The store key, agreed between the data directory and the bucket. The
/// bucket keeps a copy so that a store rebuilt from the bucket alone (the
/// local disk lost) maps names to the same ids.
pub(super) fn shared_key(dir: &Path, sh: &Shipper) -> Result<[u8; 32]> {
    use object_store::{PutMode, PutOptions, PutPayload};
    let local_path = dir.join(KEY_FILE);
    let local = read_key(&local_path)?;
    let fresh = match local {
        Some(k) => k,
        None => random_key()?,
    };
    // Read first: an existing key (the usual case) costs one GET and no
    // write, so a store opens on a full disk, and a read-only command
    // writes nothing.
    let remote: [u8; 32] = sh.on_bucket(move |bucket| async move {
        let key_path = bucket.layout().store_key();
        let store = bucket.store();
        if let Some(k) = get_key(store.as_ref(), &key_path).await? {
            return Ok(k);
        }
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match store
            .put_opts(&key_path, PutPayload::from(fresh.to_vec()), opts)
            .await
        {
            Ok(_) => Ok(fresh),
            // Another store created it meanwhile: theirs counts.
            Err(object_store::Error::AlreadyExists { .. }) => {
                get_key(store.as_ref(), &key_path).await?.ok_or_else(|| {
                    Error::new(
                        ErrorKind::Io,
                        "the bucket's store.key vanished after it was made",
                    )
                })
            }
            Err(e) => Err(store_error("writing the store key", e)),
        }
    })?;
    match local {
        Some(k) if k != remote => Err(Error::invalid(
            "the bucket belongs to another store (its store.key differs from this data \
             directory's); use another bucket or prefix",
        )),
        Some(k) => Ok(k),
        None => {
            fsutil::write_atomic(&local_path, &remote)?;
            Ok(remote)
        }
    }
}

/// The bucket's copy of the store key, if it has one.
async fn get_key(
    store: &dyn object_store::ObjectStore,
    key_path: &object_store::path::Path,
) -> Result<Option<[u8; 32]>> {
    use object_store::ObjectStoreExt;
    let got = match store.get(key_path).await {
        Ok(r) => r
            .bytes()
            .await
            .map_err(|e| store_error("reading the store key", e))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(store_error("reading the store key", e)),
    };
    <[u8; 32]>::try_from(&got[..])
        .map(Some)
        .map_err(|_| Error::new(ErrorKind::Corruption, "the bucket's store.key is damaged"))
}

pub(super) fn load_or_create_key(dir: &Path) -> Result<[u8; 32]> {
    let path = dir.join(KEY_FILE);
    if let Some(k) = read_key(&path)? {
        return Ok(k);
    }
    fsutil::write_atomic(&path, &random_key()?)?;
    // Two processes may race to create the key; the rename makes one file
    // win, so read back whichever did.
    read_key(&path)?.ok_or_else(|| {
        Error::new(
            ErrorKind::Corruption,
            format!("{} vanished after it was written", path.display()),
        )
    })
}

/// The key file at `path`, if there is one.
fn read_key(path: &Path) -> Result<Option<[u8; 32]>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(<[u8; 32]>::try_from(b).map_err(|_| {
            Error::new(
                ErrorKind::Corruption,
                format!("{} must hold exactly 32 bytes", path.display()),
            )
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}

fn random_key() -> Result<[u8; 32]> {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("no randomness for the store key: {e}"),
        )
    })?;
    Ok(k)
}
