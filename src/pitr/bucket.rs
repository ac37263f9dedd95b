//! The bucket: an `object_store` backend chosen from a URL, plus the key
//! layout under the URL's prefix.
//!
//! | URL | backend |
//! |---|---|
//! | `file:///abs/dir` | `LocalFileSystem` rooted at the directory (created if missing), with fsync on |
//! | `memory://` or `memory:///prefix` | a fresh `InMemory` store (tests) |
//! | `s3://bucket/prefix?opt=value&...` | `AmazonS3`, configured from the usual `AWS_*` environment variables, then from the URL's options |
//!
//! S3 options are object_store's `AmazonS3ConfigKey` names, with or
//! without the `aws_` prefix: `endpoint`, `region`, `allow_http`,
//! `access_key_id`, `secret_access_key`, `session_token`,
//! `virtual_hosted_style_request`, `conditional_put`, ... Values are
//! percent-decoded (`+` is kept as is). A URL's secrets are never shown:
//! `Display` and `Debug` print them as `***`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};

use super::keys::KeyLayout;
use crate::error::{Error, ErrorKind};

/// Why a bucket URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BucketUrlError {
    /// No `scheme://`.
    MissingScheme,
    /// A scheme other than `file`, `memory` and `s3`.
    UnsupportedScheme { scheme: String },
    /// `file://` needs an absolute path: `file:///abs/dir`.
    FileNotAbsolute,
    /// `file://` with a host other than `localhost`.
    FileHost { host: String },
    /// `memory://` takes no host.
    MemoryHost { host: String },
    /// `s3://` without a bucket name.
    MissingBucket,
    /// A bucket name S3 does not allow (3 to 63 of `a-z 0-9 . -`, starting
    /// and ending with a letter or digit).
    BadBucket { bucket: String },
    /// Credentials in the URL's authority (`user:secret@`); use options or
    /// the environment.
    UserInfo,
    /// The prefix is not a valid object-store path.
    BadPrefix { prefix: String },
    /// A `%` escape that is not two hex digits, or decodes to invalid UTF-8.
    BadEscape,
    /// A `#fragment`.
    Fragment,
    /// An option this scheme does not take.
    UnknownOption { key: String },
    /// An option given twice.
    DuplicateOption { key: String },
    /// An option without `=value`.
    MissingValue { key: String },
}

impl BucketUrlError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

impl fmt::Display for BucketUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bad bucket URL: ")?;
        match self {
            BucketUrlError::MissingScheme => {
                write!(f, "expected file:///dir, memory:// or s3://bucket/prefix")
            }
            BucketUrlError::UnsupportedScheme { scheme } => write!(
                f,
                "unsupported scheme {scheme:?} (use file, memory or s3)"
            ),
            BucketUrlError::FileNotAbsolute => {
                write!(f, "file URLs need an absolute path: file:///abs/dir")
            }
            BucketUrlError::FileHost { host } => {
                write!(f, "file URL with host {host:?}: use file:///abs/dir")
            }
            BucketUrlError::MemoryHost { host } => {
                write!(f, "memory URL with host {host:?}: use memory:// or memory:///prefix")
            }
            BucketUrlError::MissingBucket => write!(f, "s3 URL without a bucket name"),
            BucketUrlError::BadBucket { bucket } => write!(f, "bad S3 bucket name {bucket:?}"),
            BucketUrlError::UserInfo => write!(
                f,
                "credentials in the URL authority; use ?access_key_id=...&secret_access_key=... or AWS_* variables"
            ),
            BucketUrlError::BadPrefix { prefix } => write!(f, "bad prefix {prefix:?}"),
            BucketUrlError::BadEscape => write!(f, "bad %-escape"),
            BucketUrlError::Fragment => write!(f, "URLs take no #fragment"),
            BucketUrlError::UnknownOption { key } => write!(f, "unknown option {key:?}"),
            BucketUrlError::DuplicateOption { key } => write!(f, "option {key:?} given twice"),
            BucketUrlError::MissingValue { key } => write!(f, "option {key:?} has no value"),
        }
    }
}

impl std::error::Error for BucketUrlError {}

impl From<BucketUrlError> for Error {
    #[cold]
    fn from(e: BucketUrlError) -> Self {
        Error::new(e.kind(), e.to_string())
    }
}

#[derive(Clone, PartialEq, Eq)]
enum Target {
    File {
        root: PathBuf,
    },
    Memory {
        prefix: String,
    },
    S3 {
        bucket: String,
        prefix: String,
        options: Vec<(String, String)>,
    },
}

/// A parsed, validated bucket URL.
#[derive(Clone, PartialEq, Eq)]
pub struct BucketUrl {
    target: Target,
}

impl BucketUrl {
    pub fn parse(url: &str) -> Result<BucketUrl, BucketUrlError> {
        let (scheme, rest) = url.split_once("://").ok_or(BucketUrlError::MissingScheme)?;
        let scheme = scheme.to_ascii_lowercase();
        if rest.contains('#') {
            return Err(BucketUrlError::Fragment);
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let (host, path) = match before_query.find('/') {
            Some(i) => before_query.split_at(i),
            None => (before_query, ""),
        };
        if host.contains('@') {
            return Err(BucketUrlError::UserInfo);
        }
        let path = percent_decode(path)?;
        let options = parse_query(query)?;
        let target = match scheme.as_str() {
            "file" => {
                if !host.is_empty() && host != "localhost" {
                    return Err(BucketUrlError::FileHost {
                        host: host.to_string(),
                    });
                }
                if let Some((key, _)) = options.first() {
                    return Err(BucketUrlError::UnknownOption { key: key.clone() });
                }
                let root = PathBuf::from(&path);
                if path.is_empty() || !root.is_absolute() {
                    return Err(BucketUrlError::FileNotAbsolute);
                }
                Target::File { root }
            }
            "memory" => {
                if !host.is_empty() {
                    return Err(BucketUrlError::MemoryHost {
                        host: host.to_string(),
                    });
                }
                if let Some((key, _)) = options.first() {
                    return Err(BucketUrlError::UnknownOption { key: key.clone() });
                }
                Target::Memory {
                    prefix: checked_prefix(&path)?,
                }
            }
            "s3" | "s3a" => {
                if host.is_empty() {
                    return Err(BucketUrlError::MissingBucket);
                }
                if !valid_bucket(host) {
                    return Err(BucketUrlError::BadBucket {
                        bucket: host.to_string(),
                    });
                }
                for (key, _) in &options {
                    match AmazonS3ConfigKey::from_str(key) {
                        Ok(AmazonS3ConfigKey::Bucket) | Err(_) => {
                            return Err(BucketUrlError::UnknownOption { key: key.clone() })
                        }
                        Ok(_) => {}
                    }
                }
                Target::S3 {
                    bucket: host.to_string(),
                    prefix: checked_prefix(&path)?,
                    options,
                }
            }
            _ => return Err(BucketUrlError::UnsupportedScheme { scheme }),
        };
        Ok(BucketUrl { target })
    }

    /// `"file"`, `"memory"` or `"s3"`.
    pub fn scheme(&self) -> &'static str {
        match self.target {
            Target::File { .. } => "file",
            Target::Memory { .. } => "memory",
            Target::S3 { .. } => "s3",
        }
    }

    /// The key prefix inside the store (always `""` for `file://`, whose
    /// path is the store's root directory).
    pub fn prefix(&self) -> &str {
        match &self.target {
            Target::File { .. } => "",
            Target::Memory { prefix } | Target::S3 { prefix, .. } => prefix,
        }
    }

    /// The directory of a `file://` bucket.
    pub fn local_root(&self) -> Option<&std::path::Path> {
        match &self.target {
            Target::File { root } => Some(root),
            _ => None,
        }
    }
}

impl FromStr for BucketUrl {
    type Err = BucketUrlError;

    fn from_str(s: &str) -> Result<BucketUrl, BucketUrlError> {
        BucketUrl::parse(s)
    }
}

impl fmt::Display for BucketUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            Target::File { root } => write!(f, "file://{}", root.display()),
            Target::Memory { prefix } if prefix.is_empty() => write!(f, "memory://"),
            Target::Memory { prefix } => write!(f, "memory:///{prefix}"),
            Target::S3 {
                bucket,
                prefix,
                options,
            } => {
                write!(f, "s3://{bucket}")?;
                if !prefix.is_empty() {
                    write!(f, "/{prefix}")?;
                }
                for (i, (k, v)) in options.iter().enumerate() {
                    let sep = if i == 0 { '?' } else { '&' };
                    let v = if is_secret(k) { "***" } else { v.as_str() };
                    write!(f, "{sep}{k}={v}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Debug for BucketUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BucketUrl({self})")
    }
}

fn is_secret(key: &str) -> bool {
    key.contains("secret") || key.contains("token") || key.contains("customer_key")
}

fn valid_bucket(b: &str) -> bool {
    let ok_end = |c: Option<u8>| matches!(c, Some(b'a'..=b'z' | b'0'..=b'9'));
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-'))
        && ok_end(b.bytes().next())
        && ok_end(b.bytes().last())
}

fn checked_prefix(path: &str) -> Result<String, BucketUrlError> {
    let layout = KeyLayout::new(path).map_err(|_| BucketUrlError::BadPrefix {
        prefix: path.to_string(),
    })?;
    let prefix = layout.prefix().as_ref().to_string();
    // object_store percent-encodes characters it does not keep as is; refuse
    // those rather than write under a prefix other than the one given.
    if prefix != path.trim_matches('/') {
        return Err(BucketUrlError::BadPrefix {
            prefix: path.to_string(),
        });
    }
    Ok(prefix)
}

fn parse_query(query: Option<&str>) -> Result<Vec<(String, String)>, BucketUrlError> {
    let mut out: Vec<(String, String)> = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = match pair.split_once('=') {
            Some((k, v)) => (percent_decode(k)?, percent_decode(v)?),
            None => {
                return Err(BucketUrlError::MissingValue {
                    key: percent_decode(pair)?,
                })
            }
        };
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(BucketUrlError::DuplicateOption { key: k });
        }
        out.push((k, v));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, BucketUrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = |j: usize| bytes.get(j).and_then(|c| (*c as char).to_digit(16));
            match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => out.push((h * 16 + l) as u8),
                _ => return Err(BucketUrlError::BadEscape),
            }
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| BucketUrlError::BadEscape)
}

/// An object store plus the key layout under the bucket's prefix.
#[derive(Clone)]
pub struct Bucket {
    store: Arc<dyn ObjectStore>,
    layout: KeyLayout,
    url: Option<BucketUrl>,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bucket")
            .field("store", &self.store.to_string())
            .field("prefix", &self.layout.prefix().as_ref())
            .field("url", &self.url)
            .finish()
    }
}

/// The entries of one bucket directory, each list sorted by key.
#[derive(Debug, Clone, Default)]
pub struct DirListing {
    /// Files directly in the directory.
    pub objects: Vec<ObjectMeta>,
    /// Subdirectories.
    pub dirs: Vec<Path>,
}

impl Bucket {
    /// Parses `url` and opens its store. See the module docs for the URLs.
    pub fn open(url: &str) -> Result<Bucket, Error> {
        Bucket::from_url(&BucketUrl::parse(url)?)
    }

    /// Opens the store a parsed URL names. A `file://` directory is created
    /// if missing; `memory://` gives a fresh, empty store every time.
    pub fn from_url(url: &BucketUrl) -> Result<Bucket, Error> {
        let store: Arc<dyn ObjectStore> = match &url.target {
            Target::File { root } => {
                std::fs::create_dir_all(root).map_err(|e| {
                    Error::io(format!("creating bucket directory {}", root.display()), e)
                })?;
                // fsync each file and its directories before a PUT returns, so
                // a segment acknowledged as remote survives power loss.
                let fs = LocalFileSystem::new_with_prefix(root)
                    .map_err(|e| store_error("opening the bucket directory", e))?
                    .with_fsync(true);
                Arc::new(fs)
            }
            Target::Memory { .. } => Arc::new(InMemory::new()),
            Target::S3 {
                bucket, options, ..
            } => {
                let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
                for (k, v) in options {
                    let key = AmazonS3ConfigKey::from_str(k).map_err(|_| {
                        Error::from(BucketUrlError::UnknownOption { key: k.clone() })
                    })?;
                    b = b.with_config(key, v);
                }
                let s3 = b.build().map_err(|e| {
                    Error::new(
                        ErrorKind::InvalidInput,
                        format!("bad S3 configuration for {url}: {e}"),
                    )
                })?;
                Arc::new(s3)
            }
        };
        let layout = KeyLayout::new(url.prefix())?;
        Ok(Bucket {
            store,
            layout,
            url: Some(url.clone()),
        })
    }

    /// Wraps a store built elsewhere (a decorator: retrying, instrumented,
    /// fault-injecting).
    pub fn from_store(store: Arc<dyn ObjectStore>, layout: KeyLayout) -> Bucket {
        Bucket {
            store,
            layout,
            url: None,
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }

    /// The URL it was opened from, if any.
    pub fn url(&self) -> Option<&BucketUrl> {
        self.url.as_ref()
    }

    /// Lists one directory (one delimited LIST, all pages), sorted by key:
    /// with the layout's fixed-width hex names that is commit order.
    pub async fn list_dir(&self, dir: &Path) -> Result<DirListing, Error> {
        let mut r = self
            .store
            .list_with_delimiter(Some(dir))
            .await
            .map_err(|e| store_error("listing the bucket", e))?;
        r.objects
            .sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
        r.common_prefixes.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        Ok(DirListing {
            objects: r.objects,
            dirs: r.common_prefixes,
        })
    }
}

/// Maps an object-store failure to [`ErrorKind::Io`] (retryable).
#[cold]
pub(crate) fn store_error(context: &str, e: object_store::Error) -> Error {
    Error::context(ErrorKind::Io, context, e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_schemes() {
        let f = BucketUrl::parse("file:///var/lib/amber/bucket").unwrap();
        assert_eq!(f.scheme(), "file");
        assert_eq!(
            f.local_root().unwrap(),
            std::path::Path::new("/var/lib/amber/bucket")
        );
        assert_eq!(f.prefix(), "");
        let f = BucketUrl::parse("file://localhost/tmp/a%20b").unwrap();
        assert_eq!(f.local_root().unwrap(), std::path::Path::new("/tmp/a b"));

        let m = BucketUrl::parse("memory://").unwrap();
        assert_eq!((m.scheme(), m.prefix()), ("memory", ""));
        assert_eq!(BucketUrl::parse("memory:///t/1").unwrap().prefix(), "t/1");

        let s = BucketUrl::parse(
            "s3://my-bucket/amber/prod/?endpoint=http://127.0.0.1:9000&region=us-east-1&allow_http=true&secret_access_key=a%2Bb",
        )
        .unwrap();
        assert_eq!((s.scheme(), s.prefix()), ("s3", "amber/prod"));
        let shown = s.to_string();
        assert!(shown.contains("endpoint=http://127.0.0.1:9000"), "{shown}");
        assert!(
            shown.contains("secret_access_key=***") && !shown.contains("a+b"),
            "{shown}"
        );
        assert!(!format!("{s:?}").contains("a+b"));
        let Target::S3 { options, .. } = &s.target else {
            unreachable!()
        };
        assert!(options.contains(&("secret_access_key".into(), "a+b".into())));
    }

    #[test]
    fn malformed_urls_get_typed_errors() {
        use BucketUrlError as E;
        type Check = fn(&E) -> bool;
        let cases: &[(&str, Check)] = &[
            ("/tmp/x", |e| matches!(e, E::MissingScheme)),
            ("gs://b/p", |e| matches!(e, E::UnsupportedScheme { .. })),
            ("file://relative/dir", |e| matches!(e, E::FileHost { .. })),
            ("file://", |e| matches!(e, E::FileNotAbsolute)),
            ("file:///tmp/x?fsync=false", |e| {
                matches!(e, E::UnknownOption { .. })
            }),
            ("memory://host", |e| matches!(e, E::MemoryHost { .. })),
            ("memory:///a//b", |e| matches!(e, E::BadPrefix { .. })),
            ("s3://", |e| matches!(e, E::MissingBucket)),
            ("s3:///prefix", |e| matches!(e, E::MissingBucket)),
            ("s3://ab/p", |e| matches!(e, E::BadBucket { .. })),
            ("s3://Bucket/p", |e| matches!(e, E::BadBucket { .. })),
            ("s3://-bucket/p", |e| matches!(e, E::BadBucket { .. })),
            ("s3://k:s@bucket/p", |e| matches!(e, E::UserInfo)),
            ("s3://bucket/a/../b", |e| matches!(e, E::BadPrefix { .. })),
            ("s3://bucket/a/./b", |e| matches!(e, E::BadPrefix { .. })),
            ("s3://bucket/p?endpoint=%zz", |e| matches!(e, E::BadEscape)),
            ("s3://bucket/p?endpoint=%ff", |e| matches!(e, E::BadEscape)),
            ("s3://bucket/p?nonsense=1", |e| {
                matches!(e, E::UnknownOption { .. })
            }),
            ("s3://bucket/p?bucket=other", |e| {
                matches!(e, E::UnknownOption { .. })
            }),
            ("s3://bucket/p?region=a&region=b", |e| {
                matches!(e, E::DuplicateOption { .. })
            }),
            ("s3://bucket/p?allow_http", |e| {
                matches!(e, E::MissingValue { .. })
            }),
            ("s3://bucket/p#frag", |e| matches!(e, E::Fragment)),
        ];
        for (url, check) in cases {
            let e = BucketUrl::parse(url).unwrap_err();
            assert!(check(&e), "{url}: {e:?}");
            assert_eq!(Error::from(e).kind(), ErrorKind::InvalidInput);
        }
    }

    #[test]
    fn s3_builds_without_network() {
        let b = Bucket::open(
            "s3://amber-test/p?endpoint=http://127.0.0.1:9&region=us-east-1&allow_http=true&access_key_id=k&secret_access_key=s",
        )
        .unwrap();
        assert_eq!(b.layout().prefix().as_ref(), "p");
        let e = Bucket::open("s3://amber-test/p?allow_http=maybe").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }
}
