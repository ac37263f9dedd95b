//! Object ids: a keyed hash of the object's name, rendered as fixed-width
//! lowercase hex. File paths are built from ids only, so no name (however
//! hostile: `../x`, `/etc/passwd`, NUL bytes) can reach outside the store.

use std::fmt;

use crate::error::{Error, Result};

/// Largest object name, in bytes of UTF-8.
pub const MAX_NAME_BYTES: usize = 1024;

/// Length of an id in hex characters.
pub const ID_HEX_LEN: usize = 64;

/// A 256-bit object id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectId([u8; 32]);

impl ObjectId {
    /// Derives the id of `name` under the store's secret key.
    pub fn from_name(key: &[u8; 32], name: &str) -> Result<ObjectId> {
        validate_name(name)?;
        Ok(ObjectId(
            *blake3::keyed_hash(key, name.as_bytes()).as_bytes(),
        ))
    }

    /// Parses the hex form, refusing anything that is not exactly 64
    /// lowercase hex digits.
    pub fn from_hex(s: &str) -> Result<ObjectId> {
        if s.len() != ID_HEX_LEN {
            return Err(Error::invalid(format!(
                "object id must be {ID_HEX_LEN} hex characters, got {}",
                s.len()
            )));
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hi = hex_val(chunk[0]);
            let lo = hex_val(chunk[1]);
            match (hi, lo) {
                (Some(h), Some(l)) => out[i] = (h << 4) | l,
                _ => {
                    return Err(Error::invalid(
                        "object id must contain only lowercase hex digits",
                    ))
                }
            }
        }
        Ok(ObjectId(out))
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// The id with these bytes, as stored in the store journal.
    pub(crate) fn from_bytes(bytes: [u8; 32]) -> ObjectId {
        ObjectId(bytes)
    }

    /// This object's directory under the store's `objects` directory,
    /// fanned out by the first byte so no directory grows too large.
    pub(crate) fn dir_under(&self, objects_root: &std::path::Path) -> std::path::PathBuf {
        let hex = self.to_hex();
        objects_root.join(&hex[..2]).join(hex)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// Names are any non-empty UTF-8 up to `MAX_NAME_BYTES`.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::invalid("object name must not be empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(Error::limit(format!(
            "object name is {} bytes; the limit is {MAX_NAME_BYTES}",
            name.len()
        )));
    }
    Ok(())
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.to_hex())
    }
}

/// Lowercase hex, two digits a byte: the library's one hex encoder.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_validation() {
        let key = [7u8; 32];
        let id = ObjectId::from_name(&key, "room").unwrap();
        assert_eq!(ObjectId::from_hex(&id.to_hex()).unwrap(), id);
        assert!(ObjectId::from_hex("zz").is_err());
        assert!(ObjectId::from_hex(&"G".repeat(64)).is_err());
        assert!(ObjectId::from_hex(&id.to_hex().to_uppercase()).is_err());
    }

    #[test]
    fn names_are_keyed_and_bounded() {
        let a = ObjectId::from_name(&[1; 32], "x").unwrap();
        let b = ObjectId::from_name(&[2; 32], "x").unwrap();
        assert_ne!(a, b);
        assert!(ObjectId::from_name(&[1; 32], "").is_err());
        assert!(ObjectId::from_name(&[1; 32], &"n".repeat(1025)).is_err());
        assert!(ObjectId::from_name(&[1; 32], &"n".repeat(1024)).is_ok());
    }
}
