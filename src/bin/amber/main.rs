//! The `amber` command line: inspect and change objects in a data
//! directory. Every writing command waits for its commit's ticket before
//! it exits, and reports the commit's sequence number.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use amber::{Config, Error, ErrorKind, Store, Value};

mod kv;
mod output;
mod pitr;
mod serve;

use clap::{Parser, Subcommand};
use output::{io, parse_param, print_table, to_json};

#[derive(Parser)]
#[command(name = "amber", version, about = "Per-object transactional storage")]
struct Cli {
    /// Data directory of the store.
    #[arg(long, global = true, default_value = "./amber-data")]
    data: PathBuf,
    /// Bucket URL (`file:///path`, `s3://bucket/prefix?endpoint=...`);
    /// defaults to the store's own, `file://<data>/bucket`. `none` turns
    /// log shipping off (no point-in-time recovery).
    #[arg(long, global = true)]
    bucket: Option<String>,
    /// When a commit counts as durable: `local` (fsync'd) or `remote`
    /// (in the bucket). Replies of `serve` and writing commands wait for it.
    #[arg(long, global = true, value_enum, default_value = "local")]
    durability: Durability,
    /// fsync each object's WAL by itself instead of sharing the store
    /// journal's fsyncs (round 1's way, kept for side-by-side figures).
    #[arg(long, global = true)]
    no_journal: bool,
    /// Group commit: how long (µs) the journal's sync thread may wait for
    /// more commits when several objects are committing (0: never).
    #[arg(long, global = true, default_value_t = 200)]
    commit_delay_us: u64,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Durability {
    Local,
    Remote,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run SQL against an object. PARAMs bind to ?1, ?2, ...: `null`, an
    /// integer or a real is taken as such, anything else as text; force a
    /// type with `i:`, `f:`, `s:` or `x:` (hex blob).
    Sql {
        object: String,
        sql: String,
        params: Vec<String>,
        /// Print rows as JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Key-value operations.
    Kv {
        #[command(subcommand)]
        op: KvCmd,
    },
    /// List the store's objects in name order, one `ID<TAB>NAME` per line,
    /// streamed page by page.
    Objects {
        /// Only names that start with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Only names after this one (the last name of a previous listing).
        #[arg(long, default_value = "")]
        after: String,
        /// At most this many.
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Delete an object for good: its local files now, its bucket history
    /// once the retention window has passed (restorable until then), or
    /// now with --purge. Reusing the name starts a fresh object.
    Delete {
        object: String,
        /// Delete the bucket history now too.
        #[arg(long)]
        purge: bool,
    },
    #[command(flatten)]
    Pitr(pitr::PitrCmd),
    /// Host the built-in object classes (counter, chat, kv) over HTTP and
    /// WebSockets until SIGINT/SIGTERM.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8787")]
        listen: std::net::SocketAddr,
        /// Worker threads running turns (default: one per core, at least 2).
        #[arg(long)]
        workers: Option<usize>,
        /// Seconds an idle object stays in memory.
        #[arg(long)]
        idle_timeout: Option<u64>,
        /// With `--no-journal`: threads that fsync objects' WAL files
        /// (fsyncs in flight).
        #[arg(long, default_value_t = 16)]
        sync_threads: usize,
        /// Cluster mode: share the bucket with other `amber serve` hosts;
        /// each object is served by one host at a time, and requests for
        /// another host's objects are forwarded (docs/scale-out.md).
        /// Implies `--durability remote`.
        #[arg(long)]
        cluster: bool,
        /// Cluster mode: this host's name (default: the system host name).
        #[arg(long)]
        host: Option<String>,
        /// Cluster mode: the address other hosts reach this one at
        /// (default: the address it listens on).
        #[arg(long)]
        advertise: Option<String>,
        /// Cluster mode: lease time-to-live in milliseconds.
        #[arg(long, default_value_t = 10_000)]
        lease_ttl_ms: u64,
    },
}

#[derive(Subcommand)]
pub(crate) enum KvCmd {
    /// Print a key's value (UTF-8, or hex with --hex).
    Get {
        object: String,
        key: String,
        #[arg(long)]
        hex: bool,
    },
    /// Set a key to a value (UTF-8, or hex with --hex).
    Put {
        object: String,
        key: String,
        value: String,
        #[arg(long)]
        hex: bool,
    },
    /// Delete a key.
    Delete { object: String, key: String },
    /// List keys in order.
    List {
        object: String,
        #[arg(long)]
        prefix: Option<String>,
        #[arg(long)]
        start: Option<String>,
        #[arg(long)]
        start_after: Option<String>,
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        reverse: bool,
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        hex: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("amber: error ({:?}): {e}", e.kind());
            ExitCode::from(match e.kind() {
                ErrorKind::InvalidInput | ErrorKind::NotAllowed | ErrorKind::LimitExceeded => 2,
                ErrorKind::Locked => 3,
                _ => 1,
            })
        }
    }
}

fn run(cli: Cli) -> Result<(), Error> {
    let mut config = Config::new(&cli.data).with_durability(match cli.durability {
        Durability::Local => amber::DurabilityLevel::Local,
        Durability::Remote => amber::DurabilityLevel::Remote,
    });
    match cli.bucket.as_deref() {
        None => {}
        Some("none") => config = config.with_bucket(amber::BucketConfig::Disabled),
        Some(url) => config = config.with_bucket(amber::BucketConfig::Url(url.to_owned())),
    }
    if cli.no_journal {
        config = config.with_journal(amber::JournalOptions::disabled());
    } else {
        config = config.with_journal(
            amber::JournalOptions::default()
                .with_commit_delay(std::time::Duration::from_micros(cli.commit_delay_us)),
        );
    }
    if let Cmd::Serve {
        listen,
        workers,
        idle_timeout,
        sync_threads,
        cluster,
        host,
        advertise,
        lease_ttl_ms,
    } = cli.cmd
    {
        let args = serve::ServeArgs {
            listen,
            workers,
            idle_timeout_secs: idle_timeout,
            sync_threads,
            cluster: cluster.then_some(serve::ClusterArgs {
                host,
                advertise,
                lease_ttl_ms,
            }),
        };
        return serve::run(config, args);
    }
    let store = Store::open(config)?;
    let mut out = std::io::stdout().lock();
    match cli.cmd {
        Cmd::Sql {
            object,
            sql,
            params,
            json,
        } => {
            let params: Vec<Value> = params
                .iter()
                .map(|p| parse_param(p))
                .collect::<Result<_, _>>()?;
            let refs: Vec<_> = params.iter().map(Into::into).collect();
            let mut obj = store.open_object(&object)?;
            let before = obj.seq();
            let (columns, rows) = {
                let cursor = obj.exec(&sql, &refs)?;
                let columns = cursor.columns().to_vec();
                (columns, cursor.to_vec()?)
            };
            let seq = obj.end_turn()?.wait()?;
            if json {
                for r in &rows {
                    let mut m = serde_json::Map::new();
                    for (c, v) in columns.iter().zip(r.values()) {
                        m.insert(c.clone(), to_json(v));
                    }
                    writeln!(out, "{}", serde_json::Value::Object(m)).map_err(io)?;
                }
            } else if !columns.is_empty() {
                print_table(&mut out, &columns, &rows)?;
            }
            if obj.seq() != before {
                eprintln!("committed seq {seq}");
            }
            obj.close()?;
        }
        Cmd::Kv { op } => kv::run_kv(&store, op, &mut out)?,
        Cmd::Pitr(cmd) => pitr::run(&store, cmd, &mut out)?,
        Cmd::Serve { .. } => unreachable!("handled above"),
        Cmd::Delete { object, purge } => {
            let history = if purge {
                amber::BucketHistory::Purge
            } else {
                amber::BucketHistory::Keep
            };
            if store.delete_object(&object, history)? {
                writeln!(out, "deleted {object}").map_err(io)?;
            } else {
                return Err(amber::Error::new(
                    amber::ErrorKind::InvalidInput,
                    format!("no object named `{object}`"),
                ));
            }
        }
        Cmd::Objects {
            prefix,
            after,
            limit,
        } => {
            let mut left = limit.unwrap_or(usize::MAX);
            let mut opts = amber::ObjectListOptions::new()
                .prefix(prefix)
                .start_after(after);
            while left > 0 {
                opts = opts.limit(left.min(amber::DEFAULT_PAGE));
                let page = store.list_objects_page(&opts)?;
                let Some(last) = page.last() else {
                    break;
                };
                opts = opts.start_after(last.name.clone());
                left -= page.len();
                for o in page {
                    writeln!(out, "{}\t{}", o.id, o.name).map_err(io)?;
                }
            }
        }
    }
    Ok(())
}
