//! Where an object's log lives in the bucket, and bookmarks.
//!
//! ```text
//! <prefix>/objects/<object id, 64 hex>/epoch-<epoch, 16 hex>/manifest
//! <prefix>/objects/<object id>/epoch-<epoch>/segments/<first seq, 16 hex>-<last seq, 16 hex>.seg
//! <prefix>/objects/<object id>/epoch-<epoch>/snapshots/<seq, 16 hex>.snap
//! <prefix>/objects/<object id>/epoch-<epoch>/index/<first>-<last>-<stream>-<from gen>-<through gen>.idx
//! <prefix>/objects/<object id>/epoch-<epoch>/spans/<stream>-<gen>-<seq>.open | .end
//! <prefix>/log/<stream, 32 hex>/<gen, 16 hex>.sseg   store segments (many objects)
//! <prefix>/owners/<object id>          cluster mode: who owns the object
//! <prefix>/hosts/<incarnation>         cluster mode: a host's lease
//! <prefix>/fences/<incarnation>        cluster mode: the incarnation lost an object
//! ```
//!
//! Every number is fixed-width lowercase hex, so the lexical order of keys
//! (what S3 lists in) is numeric order: epochs in activation order, and in
//! each epoch segments and snapshots in commit order. No key holds a time
//! and no object carries metadata; times live inside the segment and
//! snapshot headers. The `manifest` key is reserved for the writer that owns
//! the epoch (fencing: created with a conditional PUT when an activation
//! takes the epoch).
//!
//! Not every backend lists in order (LocalFileSystem does not), so callers
//! sort what they list; [`super::Bucket::list_dir`] does.

use std::fmt;
use std::str::FromStr;

use object_store::path::Path;

use super::format::store_log::StreamId;
use crate::error::{Error, ErrorKind};
use crate::id::ObjectId;

/// Directory under the prefix that holds every object.
pub const OBJECTS_DIR: &str = "objects";
/// Directory of an epoch that holds its segments.
pub const SEGMENTS_DIR: &str = "segments";
/// Directory of an epoch that holds its snapshots.
pub const SNAPSHOTS_DIR: &str = "snapshots";
/// Directory of an epoch that holds its indexes into store segments.
pub const INDEX_DIR: &str = "index";
/// Directory of an epoch that marks where it shipped into store segments.
pub const SPANS_DIR: &str = "spans";
/// Directory under the prefix that holds the store segments.
pub const LOG_DIR: &str = "log";
const STORE_SEGMENT_SUFFIX: &str = ".sseg";
const INDEX_SUFFIX: &str = ".idx";
/// File in an epoch's directory reserved for its owner (fencing).
pub const MANIFEST_NAME: &str = "manifest";
const EPOCH_PREFIX: &str = "epoch-";
const SEGMENT_SUFFIX: &str = ".seg";
const SNAPSHOT_SUFFIX: &str = ".snap";

/// What a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    /// The epoch's directory itself (as a delimited listing returns it).
    Epoch,
    /// The epoch's manifest (fencing record).
    Manifest,
    /// A segment holding records `first..=last`.
    Segment { first: u64, last: u64 },
    /// A snapshot of the state after commit `seq`.
    Snapshot { seq: u64 },
    /// An index of commits `first..=last`, which sit in store segments
    /// `from_gen..=through_gen` of `stream` (and nothing else of the epoch
    /// does).
    Index {
        first: u64,
        last: u64,
        stream: StreamId,
        from_gen: u64,
        through_gen: u64,
    },
    /// A span of the epoch's shipping into `stream`: opened at store
    /// segment `gen` with commit `seq` (`open`), or ended at `gen` after
    /// commit `seq`.
    Span {
        stream: StreamId,
        gen: u64,
        seq: u64,
        open: bool,
    },
}

/// A key of the layout, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParsedKey {
    pub object: ObjectId,
    pub epoch: u64,
    pub kind: KeyKind,
}

/// Why a key is not one of the layout's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The prefix is not a valid object-store path (empty segment, `.`,
    /// `..`, or characters object_store refuses).
    BadPrefix { prefix: String },
    /// The key is not under the layout's prefix.
    OutsidePrefix { key: String },
    /// The key is under the prefix but not in the layout (a foreign file).
    Foreign { key: String, reason: &'static str },
    /// A segment key whose first sequence number is above its last.
    BadRange { first: u64, last: u64 },
}

impl KeyError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::BadPrefix { prefix } => write!(f, "bad bucket prefix {prefix:?}"),
            KeyError::OutsidePrefix { key } => write!(f, "key {key:?} is outside the prefix"),
            KeyError::Foreign { key, reason } => write!(f, "not an amber key {key:?}: {reason}"),
            KeyError::BadRange { first, last } => {
                write!(f, "segment range {first}..={last} is empty")
            }
        }
    }
}

impl std::error::Error for KeyError {}

impl From<KeyError> for Error {
    #[cold]
    fn from(e: KeyError) -> Self {
        Error::new(e.kind(), e.to_string())
    }
}

/// Builds and parses the keys under one prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeyLayout {
    prefix: Path,
}

impl KeyLayout {
    /// A layout under `prefix` (`""` for the bucket's root; a leading or
    /// trailing `/` is ignored).
    pub fn new(prefix: &str) -> Result<KeyLayout, KeyError> {
        let prefix = Path::parse(prefix).map_err(|_| KeyError::BadPrefix {
            prefix: prefix.to_string(),
        })?;
        Ok(KeyLayout { prefix })
    }

    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// `<prefix>/objects`: lists every object that has a log.
    /// The store's name-hash key, shared by every store on this bucket.
    pub fn store_key(&self) -> Path {
        self.prefix.clone().join("store.key")
    }

    /// Cluster mode: `<prefix>/owners/<id>`, the object's ownership record.
    /// Never deleted: a stale writer could otherwise re-create it.
    pub fn owner(&self, id: &ObjectId) -> Path {
        self.prefix.clone().join("owners").join(id.to_hex())
    }

    /// Cluster mode: `<prefix>/hosts`, one lease record per live host.
    pub fn hosts(&self) -> Path {
        self.prefix.clone().join("hosts")
    }

    /// Cluster mode: the lease record of host incarnation `incarnation`.
    pub fn host(&self, incarnation: &str) -> Path {
        self.hosts().join(incarnation)
    }

    /// Cluster mode: `<prefix>/fences/<incarnation>`, created by the first
    /// host that takes an object away from that incarnation. Never deleted:
    /// its absence is what lets the incarnation acknowledge.
    pub fn fence(&self, incarnation: &str) -> Path {
        self.prefix.clone().join("fences").join(incarnation)
    }

    pub fn objects(&self) -> Path {
        self.prefix.clone().join(OBJECTS_DIR)
    }

    /// `<prefix>/objects/<id>`: lists the object's epochs.
    pub fn object(&self, id: &ObjectId) -> Path {
        self.objects().join(id.to_hex())
    }

    /// `<prefix>/objects/<id>/epoch-<epoch>`.
    pub fn epoch(&self, id: &ObjectId, epoch: u64) -> Path {
        self.object(id).join(format!("{EPOCH_PREFIX}{epoch:016x}"))
    }

    /// The epoch's manifest (fencing record).
    pub fn manifest(&self, id: &ObjectId, epoch: u64) -> Path {
        self.epoch(id, epoch).join(MANIFEST_NAME)
    }

    /// Directory of the epoch's segments.
    pub fn segments(&self, id: &ObjectId, epoch: u64) -> Path {
        self.epoch(id, epoch).join(SEGMENTS_DIR)
    }

    /// Directory of the epoch's snapshots.
    pub fn snapshots(&self, id: &ObjectId, epoch: u64) -> Path {
        self.epoch(id, epoch).join(SNAPSHOTS_DIR)
    }

    /// The key of the segment holding records `first..=last`.
    pub fn segment(
        &self,
        id: &ObjectId,
        epoch: u64,
        first: u64,
        last: u64,
    ) -> Result<Path, KeyError> {
        if first > last {
            return Err(KeyError::BadRange { first, last });
        }
        Ok(self
            .segments(id, epoch)
            .join(format!("{first:016x}-{last:016x}{SEGMENT_SUFFIX}")))
    }

    /// The key of the snapshot of the state after commit `seq`.
    pub fn snapshot(&self, id: &ObjectId, epoch: u64, seq: u64) -> Path {
        self.snapshots(id, epoch)
            .join(format!("{seq:016x}{SNAPSHOT_SUFFIX}"))
    }

    /// Directory of the epoch's indexes into store segments.
    pub fn index_dir(&self, id: &ObjectId, epoch: u64) -> Path {
        self.epoch(id, epoch).join(INDEX_DIR)
    }

    /// Directory of the epoch's span markers.
    pub fn spans_dir(&self, id: &ObjectId, epoch: u64) -> Path {
        self.epoch(id, epoch).join(SPANS_DIR)
    }

    /// The key of an index (see [`KeyKind::Index`]).
    #[allow(clippy::too_many_arguments)]
    pub fn index(
        &self,
        id: &ObjectId,
        epoch: u64,
        first: u64,
        last: u64,
        stream: &StreamId,
        from_gen: u64,
        through_gen: u64,
    ) -> Path {
        self.index_dir(id, epoch).join(format!(
            "{first:016x}-{last:016x}-{stream}-{from_gen:016x}-{through_gen:016x}{INDEX_SUFFIX}"
        ))
    }

    /// The key of a span marker (see [`KeyKind::Span`]).
    pub fn span(
        &self,
        id: &ObjectId,
        epoch: u64,
        stream: &StreamId,
        gen: u64,
        seq: u64,
        open: bool,
    ) -> Path {
        let suffix = if open { "open" } else { "end" };
        self.spans_dir(id, epoch)
            .join(format!("{stream}-{gen:016x}-{seq:016x}.{suffix}"))
    }

    /// `<prefix>/log`: one directory per stream.
    pub fn log(&self) -> Path {
        self.prefix.clone().join(LOG_DIR)
    }

    /// Directory of one stream's store segments.
    pub fn stream(&self, stream: &StreamId) -> Path {
        self.log().join(stream.to_hex())
    }

    /// The key of store segment `gen` of `stream`.
    pub fn store_segment(&self, stream: &StreamId, gen: u64) -> Path {
        self.stream(stream)
            .join(format!("{gen:016x}{STORE_SEGMENT_SUFFIX}"))
    }

    /// Parses a store segment's key into its stream and generation.
    pub fn parse_store_segment(&self, key: &Path) -> Option<(StreamId, u64)> {
        let rest: Vec<String> = key
            .prefix_match(&self.prefix)?
            .map(|p| p.as_ref().to_string())
            .collect();
        match rest.as_slice() {
            [log, stream, name] if log == LOG_DIR => Some((
                StreamId::from_hex(stream)?,
                parse_hex16(name.strip_suffix(STORE_SEGMENT_SUFFIX)?)?,
            )),
            _ => None,
        }
    }

    /// Parses a key (or an epoch directory) of this layout.
    pub fn parse(&self, key: &Path) -> Result<ParsedKey, KeyError> {
        let parts: Vec<String> = match key.prefix_match(&self.prefix) {
            Some(rest) => rest.map(|p| p.as_ref().to_string()).collect(),
            None => {
                return Err(KeyError::OutsidePrefix {
                    key: key.to_string(),
                })
            }
        };
        let foreign = |reason| KeyError::Foreign {
            key: key.to_string(),
            reason,
        };
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let (id, epoch, rest) = match parts.as_slice() {
            [objects, id, epoch, rest @ ..] if *objects == OBJECTS_DIR => (*id, *epoch, rest),
            _ => return Err(foreign("expected objects/<id>/epoch-<epoch>/...")),
        };
        let object = ObjectId::from_hex(id).map_err(|_| foreign("bad object id"))?;
        let epoch = epoch
            .strip_prefix(EPOCH_PREFIX)
            .and_then(parse_hex16)
            .ok_or_else(|| foreign("bad epoch directory"))?;
        let kind = match rest {
            [] => KeyKind::Epoch,
            [name] if *name == MANIFEST_NAME => KeyKind::Manifest,
            [dir, name] if *dir == SEGMENTS_DIR => {
                let (first, last) = name
                    .strip_suffix(SEGMENT_SUFFIX)
                    .and_then(|s| s.split_once('-'))
                    .and_then(|(a, b)| Some((parse_hex16(a)?, parse_hex16(b)?)))
                    .ok_or_else(|| foreign("bad segment name"))?;
                if first > last {
                    return Err(KeyError::BadRange { first, last });
                }
                KeyKind::Segment { first, last }
            }
            [dir, name] if *dir == SNAPSHOTS_DIR => {
                let seq = name
                    .strip_suffix(SNAPSHOT_SUFFIX)
                    .and_then(parse_hex16)
                    .ok_or_else(|| foreign("bad snapshot name"))?;
                KeyKind::Snapshot { seq }
            }
            [dir, name] if *dir == INDEX_DIR => {
                let f: Vec<&str> = name
                    .strip_suffix(INDEX_SUFFIX)
                    .ok_or_else(|| foreign("bad index name"))?
                    .split('-')
                    .collect();
                let bad = || foreign("bad index name");
                let [first, last, stream, from_gen, through_gen] = f.as_slice() else {
                    return Err(bad());
                };
                let (first, last) = (
                    parse_hex16(first).ok_or_else(bad)?,
                    parse_hex16(last).ok_or_else(bad)?,
                );
                let (from_gen, through_gen) = (
                    parse_hex16(from_gen).ok_or_else(bad)?,
                    parse_hex16(through_gen).ok_or_else(bad)?,
                );
                if first > last || from_gen > through_gen {
                    return Err(KeyError::BadRange { first, last });
                }
                KeyKind::Index {
                    first,
                    last,
                    stream: StreamId::from_hex(stream).ok_or_else(bad)?,
                    from_gen,
                    through_gen,
                }
            }
            [dir, name] if *dir == SPANS_DIR => {
                let bad = || foreign("bad span name");
                let (stem, open) = match name.rsplit_once('.') {
                    Some((stem, "open")) => (stem, true),
                    Some((stem, "end")) => (stem, false),
                    _ => return Err(bad()),
                };
                let f: Vec<&str> = stem.split('-').collect();
                let [stream, gen, seq] = f.as_slice() else {
                    return Err(bad());
                };
                KeyKind::Span {
                    stream: StreamId::from_hex(stream).ok_or_else(bad)?,
                    gen: parse_hex16(gen).ok_or_else(bad)?,
                    seq: parse_hex16(seq).ok_or_else(bad)?,
                    open,
                }
            }
            _ => return Err(foreign("unknown file in an epoch directory")),
        };
        Ok(ParsedKey {
            object,
            epoch,
            kind,
        })
    }
}

/// Exactly 16 lowercase hex digits.
fn parse_hex16(s: &str) -> Option<u64> {
    if s.len() != 16 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// A point in an object's history: commit `seq` of the timeline started by
/// writer `epoch`. Written `<epoch 16 hex>-<seq 16 hex>-<check 8 hex>`, so
/// the lexical order of bookmarks is their order in time: epochs grow with
/// every activation (and a restore into the past starts a new one), and
/// sequence numbers grow within an epoch. The check digits (a CRC32 of the
/// two numbers) catch a mistyped bookmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bookmark {
    epoch: u64,
    seq: u64,
}

/// Length of a bookmark's text form.
pub const BOOKMARK_LEN: usize = 42;

impl Bookmark {
    pub fn new(epoch: u64, seq: u64) -> Bookmark {
        Bookmark { epoch, seq }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn seq(&self) -> u64 {
        self.seq
    }

    fn check(&self) -> u32 {
        let mut h = crc32fast::Hasher::new();
        h.update(b"amber bookmark v1");
        h.update(&self.epoch.to_be_bytes());
        h.update(&self.seq.to_be_bytes());
        h.finalize()
    }
}

impl fmt::Display for Bookmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:016x}-{:016x}-{:08x}",
            self.epoch,
            self.seq,
            self.check()
        )
    }
}

/// Why a string is not a bookmark.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BookmarkError {
    /// Not [`BOOKMARK_LEN`] characters.
    Length { len: usize },
    /// No `-` where one must be (byte offset).
    Separator { at: usize },
    /// A field is not lowercase hex.
    NotHex { field: &'static str },
    /// The check digits do not match: a typo, or not a bookmark.
    Check { stored: u32, computed: u32 },
}

impl BookmarkError {
    pub fn kind(&self) -> ErrorKind {
        ErrorKind::InvalidInput
    }
}

impl fmt::Display for BookmarkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed bookmark: ")?;
        match self {
            BookmarkError::Length { len } => {
                write!(f, "{len} characters, expected {BOOKMARK_LEN}")
            }
            BookmarkError::Separator { at } => write!(f, "expected '-' at offset {at}"),
            BookmarkError::NotHex { field } => write!(f, "{field} is not lowercase hex"),
            BookmarkError::Check { .. } => write!(f, "check digits do not match (mistyped?)"),
        }
    }
}

impl std::error::Error for BookmarkError {}

impl From<BookmarkError> for Error {
    #[cold]
    fn from(e: BookmarkError) -> Self {
        Error::new(e.kind(), e.to_string())
    }
}

impl FromStr for Bookmark {
    type Err = BookmarkError;

    fn from_str(s: &str) -> Result<Bookmark, BookmarkError> {
        if s.len() != BOOKMARK_LEN {
            return Err(BookmarkError::Length { len: s.len() });
        }
        // Length is in bytes; non-ASCII input fails the hex checks, and
        // `get` never splits a character.
        for at in [16, 33] {
            if s.as_bytes().get(at) != Some(&b'-') {
                return Err(BookmarkError::Separator { at });
            }
        }
        let field = |range: std::ops::Range<usize>, name| {
            s.get(range).ok_or(BookmarkError::NotHex { field: name })
        };
        let epoch =
            parse_hex16(field(0..16, "epoch")?).ok_or(BookmarkError::NotHex { field: "epoch" })?;
        let seq =
            parse_hex16(field(17..33, "seq")?).ok_or(BookmarkError::NotHex { field: "seq" })?;
        let check = field(34..42, "check")?;
        if !check
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(BookmarkError::NotHex { field: "check" });
        }
        let stored =
            u32::from_str_radix(check, 16).map_err(|_| BookmarkError::NotHex { field: "check" })?;
        let b = Bookmark { epoch, seq };
        let computed = b.check();
        if stored != computed {
            return Err(BookmarkError::Check { stored, computed });
        }
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> ObjectId {
        ObjectId::from_name(&[n; 32], "room").unwrap()
    }

    #[test]
    fn keys_round_trip() {
        let l = KeyLayout::new("tenant/a").unwrap();
        let o = id(1);
        let seg = l.segment(&o, 7, 1, 0x10).unwrap();
        assert_eq!(
            seg.as_ref(),
            format!(
                "tenant/a/objects/{}/epoch-0000000000000007/segments/0000000000000001-0000000000000010.seg",
                o.to_hex()
            )
        );
        let p = l.parse(&seg).unwrap();
        assert_eq!(
            p,
            ParsedKey {
                object: o,
                epoch: 7,
                kind: KeyKind::Segment {
                    first: 1,
                    last: 0x10
                }
            }
        );
        let snap = l.snapshot(&o, u64::MAX, 42);
        assert_eq!(l.parse(&snap).unwrap().kind, KeyKind::Snapshot { seq: 42 });
        assert_eq!(l.parse(&l.manifest(&o, 3)).unwrap().kind, KeyKind::Manifest);
        assert_eq!(l.parse(&l.epoch(&o, 3)).unwrap().kind, KeyKind::Epoch);
        assert_eq!(
            KeyLayout::default()
                .parse(&KeyLayout::default().snapshot(&o, 0, 0))
                .unwrap()
                .epoch,
            0
        );
        assert!(matches!(
            l.segment(&o, 1, 5, 4),
            Err(KeyError::BadRange { .. })
        ));
        let st = StreamId([0xcd; 16]);
        let ix = l.index(&o, 2, 5, 9, &st, 3, 4);
        assert_eq!(
            l.parse(&ix).unwrap().kind,
            KeyKind::Index {
                first: 5,
                last: 9,
                stream: st,
                from_gen: 3,
                through_gen: 4
            }
        );
        for open in [true, false] {
            let sp = l.span(&o, 2, &st, 7, 8, open);
            assert_eq!(
                l.parse(&sp).unwrap().kind,
                KeyKind::Span {
                    stream: st,
                    gen: 7,
                    seq: 8,
                    open
                }
            );
        }
        let ss = l.store_segment(&st, 0x2a);
        assert_eq!(
            ss.as_ref(),
            format!("tenant/a/log/{}/000000000000002a.sseg", st.to_hex())
        );
        assert_eq!(l.parse_store_segment(&ss), Some((st, 0x2a)));
        assert_eq!(l.parse_store_segment(&seg), None);
    }

    #[test]
    fn keys_sort_in_commit_order() {
        let l = KeyLayout::new("p").unwrap();
        let o = id(2);
        let mut keys = [
            l.segment(&o, 2, 0x100, 0x1ff).unwrap(),
            l.segment(&o, 1, 0x10, 0xff).unwrap(),
            l.segment(&o, 1, 0x1, 0xf).unwrap(),
            l.segment(&o, 2, 0x200, 0x200).unwrap(),
        ];
        keys.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        let firsts: Vec<_> = keys
            .iter()
            .map(|k| match l.parse(k).unwrap().kind {
                KeyKind::Segment { first, .. } => first,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(firsts, vec![0x1, 0x10, 0x100, 0x200]);
    }

    #[test]
    fn foreign_keys_are_refused() {
        let l = KeyLayout::new("p").unwrap();
        let o = id(3).to_hex();
        let bad = [
            "q/objects".to_string(),
            "p/other".to_string(),
            format!("p/objects/{o}"),
            format!("p/objects/{}/epoch-0000000000000001/manifest", &o[1..]),
            format!("p/objects/{}/epoch-0000000000000001/manifest", o.to_uppercase()),
            format!("p/objects/{o}/epoch-1/manifest"),
            format!("p/objects/{o}/epoch-000000000000000G/manifest"),
            format!("p/objects/{o}/epoch-0000000000000001/other"),
            format!("p/objects/{o}/epoch-0000000000000001/segments/1-2.seg"),
            format!("p/objects/{o}/epoch-0000000000000001/segments/0000000000000001-0000000000000002.snap"),
            format!("p/objects/{o}/epoch-0000000000000001/segments/0000000000000001.seg"),
            format!("p/objects/{o}/epoch-0000000000000001/snapshots/+000000000000001.snap"),
            format!("p/objects/{o}/epoch-0000000000000001/snapshots/0000000000000001.snap/x"),
        ];
        for k in bad {
            let e = l.parse(&Path::from(k.as_str())).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{k}");
        }
        let backwards = format!(
            "p/objects/{o}/epoch-0000000000000001/segments/0000000000000002-0000000000000001.seg"
        );
        assert!(matches!(
            l.parse(&Path::from(backwards.as_str())),
            Err(KeyError::BadRange { first: 2, last: 1 })
        ));
        assert!(KeyLayout::new("a//b").is_err());
        assert!(KeyLayout::new("a/../b").is_err());
        assert!(KeyLayout::new("a/./b").is_err());
    }

    #[test]
    fn bookmarks_round_trip_and_sort() {
        let marks = [
            Bookmark::new(0, 0),
            Bookmark::new(0, 1),
            Bookmark::new(0, 0xffff),
            Bookmark::new(1, 0),
            Bookmark::new(1, u64::MAX),
            Bookmark::new(u64::MAX, 5),
        ];
        for w in marks.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].to_string() < w[1].to_string());
        }
        for b in marks {
            let s = b.to_string();
            assert_eq!(s.len(), BOOKMARK_LEN);
            assert_eq!(s.parse::<Bookmark>().unwrap(), b);
        }
    }

    #[test]
    fn bookmark_matches_the_documented_example() {
        // docs/format.md shows this bookmark; keep the two in step.
        assert_eq!(
            Bookmark::new(3, 0x2b).to_string(),
            "0000000000000003-000000000000002b-42800cb8"
        );
    }

    #[test]
    fn malformed_bookmarks_are_refused() {
        let good = Bookmark::new(3, 99).to_string();
        assert!(matches!(
            "".parse::<Bookmark>(),
            Err(BookmarkError::Length { len: 0 })
        ));
        let mut s = good.clone().into_bytes();
        s[16] = b'_';
        assert!(matches!(
            String::from_utf8(s).unwrap().parse::<Bookmark>(),
            Err(BookmarkError::Separator { at: 16 })
        ));
        assert!(matches!(
            good.to_uppercase().parse::<Bookmark>(),
            Err(BookmarkError::NotHex { .. })
        ));
        // Every single-character change is caught.
        for i in 0..good.len() {
            for c in "0123456789abcdef-xZ".chars() {
                let mut t: Vec<char> = good.chars().collect();
                if t[i] == c {
                    continue;
                }
                t[i] = c;
                let t: String = t.into_iter().collect();
                let e = t.parse::<Bookmark>().unwrap_err();
                assert_eq!(Error::from(e).kind(), ErrorKind::InvalidInput);
            }
        }
        // Multi-byte characters never panic.
        let odd = format!("{}é{}", &good[..15], &good[17..]);
        assert!(odd.parse::<Bookmark>().is_err());
    }
}
