//! Runtime ids: which object of which class an event is for.
//!
//! Every runtime object is one store object. Its store name encodes the
//! class, so the alarm scheduler can find the class of every stored object
//! at start-up:
//!
//! | id kind | store name | id bytes |
//! |---|---|---|
//! | from a name | `{class}:{name}` | `Store::id_from_name(store name)`: keyed BLAKE3 |
//! | unique | `{class}#{hex}` | 16 random bytes, then 16 bytes of a keyed MAC over class and those bytes |
//!
//! A unique id carries its own proof of origin, so `id_from_string`
//! accepts it without a lookup; a forged or other-namespace id fails the
//! MAC. A named id cannot be inverted; `id_from_string` resolves it through
//! the names the runtime has seen (this process, or stored on disk).

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::id::{hex, ObjectId};
use crate::store::Store;

/// The id of one runtime object. Equality, ordering and hashing use the 32
/// id bytes only; `Display` gives the 64-character hex form that
/// `Namespace::id_from_string` parses back.
#[derive(Clone)]
pub struct Id {
    raw: ObjectId,
    class: Arc<str>,
    /// `Some` for ids made from a name.
    name: Option<Arc<str>>,
}

impl Id {
    pub(crate) fn named(store: &Store, class: &str, name: &str) -> Result<Id> {
        crate::id::validate_name(name)?;
        let raw = store.id_from_name(&named_store_name(class, name))?;
        Ok(Id {
            raw,
            class: class.into(),
            name: Some(name.into()),
        })
    }

    pub(crate) fn unique(store: &Store, class: &str, random: [u8; 16]) -> Result<Id> {
        let mac = unique_mac(store, class, &random)?;
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(&random);
        bytes[16..].copy_from_slice(&mac);
        Ok(Id {
            raw: ObjectId::from_hex(&hex(&bytes))?,
            class: class.into(),
            name: None,
        })
    }

    /// `Some(id)` if `raw` is a unique id minted for `class` by this store.
    pub(crate) fn check_unique(store: &Store, class: &str, raw: ObjectId) -> Result<Option<Id>> {
        let b = raw.as_bytes();
        let mut random = [0u8; 16];
        random.copy_from_slice(&b[..16]);
        if unique_mac(store, class, &random)? == b[16..] {
            return Ok(Some(Id {
                raw,
                class: class.into(),
                name: None,
            }));
        }
        Ok(None)
    }

    /// Parses a store object's name back into a runtime id, if it is one.
    pub(crate) fn from_store_name(store: &Store, store_name: &str) -> Option<Id> {
        if let Some((class, name)) = store_name.split_once(':') {
            if !class.contains('#') && valid_class(class) {
                return Id::named(store, class, name).ok();
            }
        }
        let (class, hexpart) = store_name.split_once('#')?;
        if !valid_class(class) {
            return None;
        }
        let raw = ObjectId::from_hex(hexpart).ok()?;
        Id::check_unique(store, class, raw).ok().flatten()
    }

    /// The 32 id bytes, as the store's id type.
    pub fn raw(&self) -> ObjectId {
        self.raw
    }

    /// The object class (namespace) this id belongs to.
    pub fn class(&self) -> &str {
        &self.class
    }

    /// The name the id was made from; `None` for unique ids.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The name under which the object's database lives in the store.
    pub(crate) fn store_name(&self) -> String {
        match &self.name {
            Some(n) => named_store_name(&self.class, n),
            None => format!("{}#{}", self.class, self.raw.to_hex()),
        }
    }
}

fn named_store_name(class: &str, name: &str) -> String {
    format!("{class}:{name}")
}

fn unique_mac(store: &Store, class: &str, random: &[u8; 16]) -> Result<[u8; 16]> {
    // The store's keyed hash doubles as the MAC: the NUL prefix keeps these
    // inputs apart from every object name a user can pick for a class.
    let h = store.id_from_name(&format!("\0unique\0{class}\0{}", hex(random)))?;
    let mut out = [0u8; 16];
    out.copy_from_slice(&h.as_bytes()[..16]);
    Ok(out)
}

/// Class names: 1 to 64 characters of `[a-z0-9_-]`, so they are safe in
/// URLs, store names and metric labels.
pub fn valid_class(class: &str) -> bool {
    !class.is_empty()
        && class.len() <= 64
        && class
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

pub(crate) fn check_class(class: &str) -> Result<()> {
    if valid_class(class) {
        Ok(())
    } else {
        Err(Error::new(
            crate::ErrorKind::InvalidInput,
            format!("class name `{class}` must be 1-64 characters of a-z, 0-9, `_` or `-`"),
        ))
    }
}

impl PartialEq for Id {
    fn eq(&self, other: &Self) -> bool {
        self.raw == other.raw
    }
}

impl Eq for Id {}

impl Hash for Id {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.raw.hash(state)
    }
}

impl PartialOrd for Id {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Id {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.raw.cmp(&other.raw)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.raw, f)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "Id({}:{n:?} {})", self.class, self.raw),
            None => write!(f, "Id({}# {})", self.class, self.raw),
        }
    }
}
