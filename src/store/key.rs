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
    use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
    let local_path = dir.join(KEY_FILE);
    let local = match fs::read(&local_path) {
        Ok(b) => Some(<[u8; 32]>::try_from(b).map_err(|_| {
            Error::new(
                ErrorKind::Corruption,
                format!("{} must hold exactly 32 bytes", local_path.display()),
            )
        })?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(format!("read {}", local_path.display()), e)),
    };
    let bucket = sh.bucket.clone();
    let key_path = bucket.layout().store_key();
    let fresh = match local {
        Some(k) => k,
        None => {
            let mut k = [0u8; 32];
            getrandom::fill(&mut k).map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("no randomness for the store key: {e}"),
                )
            })?;
            k
        }
    };
    let remote: [u8; 32] = sh.spawner().block_on(async move {
        let store = bucket.store();
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match store
            .put_opts(&key_path, PutPayload::from(fresh.to_vec()), opts)
            .await
        {
            Ok(_) => Ok(fresh),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let got = store
                    .get(&key_path)
                    .await
                    .map_err(|e| store_error("reading the store key", e))?
                    .bytes()
                    .await
                    .map_err(|e| store_error("reading the store key", e))?;
                <[u8; 32]>::try_from(&got[..]).map_err(|_| {
                    Error::new(ErrorKind::Corruption, "the bucket's store.key is damaged")
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

pub(super) fn load_or_create_key(dir: &Path) -> Result<[u8; 32]> {
    let path = dir.join(KEY_FILE);
    match fs::read(&path) {
        Ok(bytes) => bytes.try_into().map_err(|_| {
            Error::new(
                ErrorKind::Corruption,
                format!("{} must hold exactly 32 bytes", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| {
                Error::new(
                    ErrorKind::Io,
                    format!("no randomness for the store key: {e}"),
                )
            })?;
            fsutil::write_atomic(&path, &key)?;
            // Two processes may race to create the key; the rename makes
            // one file win, so read back whichever did.
            let bytes =
                fs::read(&path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
            bytes.try_into().map_err(|_| {
                Error::new(
                    ErrorKind::Corruption,
                    format!("{} is damaged", path.display()),
                )
            })
        }
        Err(e) => Err(Error::io(format!("read {}", path.display()), e)),
    }
}
