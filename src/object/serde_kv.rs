//! JSON helpers for the KV API (feature `serde`).

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::Object;
use crate::error::{Error, Result};

impl Object {
    /// Stores `value` as JSON.
    pub fn put_json<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error::invalid(format!("cannot encode value as JSON: {e}")))?;
        self.put(key, &bytes)
    }

    /// Reads a JSON value stored by `put_json`.
    pub fn get_json<T: DeserializeOwned>(&mut self, key: &str) -> Result<Option<T>> {
        match self.get(key)? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::invalid(format!("value of `{key}` is not the expected JSON: {e}"))
            }),
        }
    }
}
