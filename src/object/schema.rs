//! amber's own tables and SQL, as literals. Everything lives under the
//! reserved prefix, which user SQL cannot touch.

pub(crate) const RESERVED_PREFIX: &str = "_amber_";

/// Bumped when the layout of the reserved tables changes.
pub(crate) const SCHEMA_VERSION: i64 = 1;

pub(crate) const CREATE: &str = "
CREATE TABLE IF NOT EXISTS _amber_kv (key TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _amber_alarms (name TEXT PRIMARY KEY, time_ms INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS _amber_meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    name TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    epoch INTEGER NOT NULL
);
";

pub(crate) const META_INIT: &str =
    "INSERT OR IGNORE INTO _amber_meta (id, schema_version, name, seq, time_ms, epoch) \
     VALUES (1, ?1, ?2, 0, 0, ?3)";
pub(crate) const META_READ: &str =
    "SELECT schema_version, name, seq, time_ms, epoch FROM _amber_meta WHERE id = 1";
pub(crate) const META_COMMIT: &str = "UPDATE _amber_meta SET seq = ?1, time_ms = ?2 WHERE id = 1";

pub(crate) const BEGIN: &str = "BEGIN";
pub(crate) const COMMIT: &str = "COMMIT";
pub(crate) const ROLLBACK: &str = "ROLLBACK";

pub(crate) const KV_GET: &str = "SELECT value FROM _amber_kv WHERE key = ?1";
pub(crate) const KV_PUT: &str = "INSERT OR REPLACE INTO _amber_kv (key, value) VALUES (?1, ?2)";
pub(crate) const KV_DELETE: &str = "DELETE FROM _amber_kv WHERE key = ?1";
pub(crate) const KV_DELETE_ALL: &str = "DELETE FROM _amber_kv";

/// `list` queries, one literal per bound shape so each is planned as an
/// index range scan: [lower inclusive | exclusive] x [upper | none] x
/// [forward | reverse]. ?1 lower, ?2 upper, ?3 limit (-1 for none).
pub(crate) const KV_LIST: [&str; 8] = [
    "SELECT key, value FROM _amber_kv WHERE key >= ?1 ORDER BY key LIMIT ?3",
    "SELECT key, value FROM _amber_kv WHERE key > ?1 ORDER BY key LIMIT ?3",
    "SELECT key, value FROM _amber_kv WHERE key >= ?1 AND key < ?2 ORDER BY key LIMIT ?3",
    "SELECT key, value FROM _amber_kv WHERE key > ?1 AND key < ?2 ORDER BY key LIMIT ?3",
    "SELECT key, value FROM _amber_kv WHERE key >= ?1 ORDER BY key DESC LIMIT ?3",
    "SELECT key, value FROM _amber_kv WHERE key > ?1 ORDER BY key DESC LIMIT ?3",
    "SELECT key, value FROM _amber_kv WHERE key >= ?1 AND key < ?2 ORDER BY key DESC LIMIT ?3",
    "SELECT key, value FROM _amber_kv WHERE key > ?1 AND key < ?2 ORDER BY key DESC LIMIT ?3",
];

pub(crate) const ALARM_GET: &str = "SELECT time_ms FROM _amber_alarms WHERE name = ?1";
pub(crate) const ALARM_SET: &str =
    "INSERT OR REPLACE INTO _amber_alarms (name, time_ms) VALUES (?1, ?2)";
pub(crate) const ALARM_DELETE: &str = "DELETE FROM _amber_alarms WHERE name = ?1";
/// Every stored alarm, for the runtime's scheduler.
pub(crate) const ALARM_EARLIEST: &str = "SELECT min(time_ms) FROM _amber_alarms";
pub(crate) const ALARM_LIST: &str = "SELECT name, time_ms FROM _amber_alarms ORDER BY name";
pub(crate) const ALARM_DELETE_ALL: &str = "DELETE FROM _amber_alarms";

pub(crate) const PAGE_COUNT: &str = "PRAGMA page_count";
pub(crate) const FREELIST_COUNT: &str = "PRAGMA freelist_count";
pub(crate) const PAGE_SIZE: &str = "PRAGMA page_size";

/// User schema objects, for `delete_all`. Virtual tables first: dropping
/// one drops its shadow tables.
pub(crate) const USER_SCHEMA: &str =
    "SELECT type, name, sql LIKE 'CREATE VIRTUAL%' FROM sqlite_schema \
     WHERE name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_amber\\_%' ESCAPE '\\' \
     AND type IN ('table', 'view', 'trigger') \
     ORDER BY (sql LIKE 'CREATE VIRTUAL%') DESC, type = 'table'";

/// Quotes an identifier for SQL built from schema names.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
