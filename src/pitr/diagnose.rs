//! `amber diagnose --bucket URL`: checks that a store honours the
//! conditional writes amber's correctness rests on (create-only segments
//! and manifests now; compare-and-swap ownership records for scale-out),
//! plus ranged reads. A store that ignores conditions (the npm `s3rver`
//! does) would let two writers overwrite each other silently.

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::Bucket;

/// One probe's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub name: &'static str,
    pub ok: bool,
    /// `true` when the store said the operation is not supported (not the
    /// same as misbehaving).
    pub unsupported: bool,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub probes: Vec<Probe>,
}

impl Diagnosis {
    /// True unless some probe saw the store misbehave. Unsupported
    /// compare-and-swap is reported but only matters for scale-out.
    pub fn is_sound(&self) -> bool {
        self.probes.iter().all(|p| p.ok || p.unsupported)
    }

    /// True when every probe passed, compare-and-swap included.
    pub fn supports_everything(&self) -> bool {
        self.probes.iter().all(|p| p.ok)
    }
}

fn probe(name: &'static str, ok: bool, detail: impl Into<String>) -> Probe {
    Probe {
        name,
        ok,
        unsupported: false,
        detail: detail.into(),
    }
}

pub async fn diagnose(bucket: &Bucket, nonce: u64) -> Diagnosis {
    let store = bucket.store();
    let key = bucket
        .layout()
        .prefix()
        .clone()
        .join("diagnose")
        .join(format!("{nonce:016x}"));
    let create = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    let mut probes = Vec::new();
    let first = store
        .put_opts(&key, PutPayload::from_static(b"one"), create.clone())
        .await;
    let etag = match &first {
        Ok(r) => {
            probes.push(probe(
                "create",
                true,
                "create-only PUT of a new key succeeded",
            ));
            r.e_tag.clone()
        }
        Err(e) => {
            probes.push(probe(
                "create",
                false,
                format!("create-only PUT failed: {e}"),
            ));
            None
        }
    };
    match store
        .put_opts(&key, PutPayload::from_static(b"two"), create)
        .await
    {
        Err(object_store::Error::AlreadyExists { .. }) => probes.push(probe(
            "reject-create",
            true,
            "second create-only PUT refused",
        )),
        Ok(_) => probes.push(probe(
            "reject-create",
            false,
            "a second create-only PUT SUCCEEDED: the store ignores If-None-Match",
        )),
        Err(e) => probes.push(probe(
            "reject-create",
            false,
            format!("unexpected answer: {e}"),
        )),
    }
    let update = |etag: Option<String>| PutOptions {
        mode: PutMode::Update(UpdateVersion {
            e_tag: etag,
            version: None,
        }),
        ..PutOptions::default()
    };
    match store
        .put_opts(
            &key,
            PutPayload::from_static(b"three"),
            update(etag.clone()),
        )
        .await
    {
        Ok(_) => probes.push(probe(
            "update",
            true,
            "conditional update with the current e-tag succeeded",
        )),
        Err(object_store::Error::NotImplemented { .. })
        | Err(object_store::Error::NotSupported { .. }) => probes.push(Probe {
            name: "update",
            ok: false,
            unsupported: true,
            detail: "conditional update is not supported by this store (needed only for scale-out)"
                .into(),
        }),
        Err(e) => probes.push(probe(
            "update",
            false,
            format!("conditional update failed: {e}"),
        )),
    }
    match store
        .put_opts(&key, PutPayload::from_static(b"four"), update(etag))
        .await
    {
        Err(object_store::Error::Precondition { .. }) => probes.push(probe(
            "reject-stale",
            true,
            "update with a stale e-tag refused",
        )),
        Err(object_store::Error::NotImplemented { .. })
        | Err(object_store::Error::NotSupported { .. }) => probes.push(Probe {
            name: "reject-stale",
            ok: false,
            unsupported: true,
            detail: "conditional update is not supported by this store".into(),
        }),
        Ok(_) => probes.push(probe(
            "reject-stale",
            false,
            "an update with a STALE e-tag succeeded: the store ignores If-Match",
        )),
        Err(e) => probes.push(probe(
            "reject-stale",
            false,
            format!("unexpected answer: {e}"),
        )),
    }
    match store.get_range(&key, 1..3).await {
        Ok(b) if b.len() == 2 => probes.push(probe(
            "ranged-read",
            true,
            "a 2-byte ranged GET returned 2 bytes",
        )),
        Ok(b) => probes.push(probe(
            "ranged-read",
            false,
            format!("a 2-byte ranged GET returned {} bytes", b.len()),
        )),
        Err(e) => probes.push(probe(
            "ranged-read",
            false,
            format!("ranged GET failed: {e}"),
        )),
    }
    let _ = store.delete(&key).await;
    let _: Option<&Path> = None;
    Diagnosis { probes }
}
