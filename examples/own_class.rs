//! Hosting your own object class over HTTP with `amber::server`, next to
//! the built-in `counter`, `chat` and `kv` classes.
//!
//! The class is `notes`: one notebook per document name, each notebook an
//! object with its own SQLite database. Notes live in a SQL table of that
//! database; a note may expire, and the object's alarm deletes expired
//! notes (and counts them in its KV store, in the same commit). Every reply
//! leaves only once the writes of its turn are durable.
//!
//! ```sh
//! cargo run --example own_class -- --data ./own-class-data --listen 127.0.0.1:8787
//! curl -X POST --data 'buy milk' http://127.0.0.1:8787/notes/groceries        # {"id":1,...}
//! curl -X POST --data 'ring Bob' 'http://127.0.0.1:8787/notes/groceries?ttl=60'
//! curl http://127.0.0.1:8787/notes/groceries                                  # both, as JSON
//! curl -X POST http://127.0.0.1:8787/counter/demo/increment                   # built-ins still there
//! ```
//!
//! | route | does |
//! |---|---|
//! | `POST /notes/{doc}` (body: the text; `?ttl=SECS` to expire) | adds a note; 201 `{"id":N,"expires_ms":T}` |
//! | `GET /notes/{doc}` | JSON array of the notes, oldest first |
//! | `GET /notes/{doc}/{id}` | one note's text, or 404 |
//! | `DELETE /notes/{doc}/{id}` | deletes the note, or 404 |
//! | `GET /notes/{doc}/stats` | `{"notes":N,"expired":M}` |
//!
//! The listening address is `--listen ADDR`, else `$AMBER_LISTEN`, else
//! `127.0.0.1:0` (a free port). The line `own_class: serving DIR on
//! http://ADDR` on stdout says where it listens. Ctrl-C or SIGTERM shuts
//! down gracefully.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use amber::runtime::{AlarmInfo, Ctx, ObjectClass, Request, Response, Runtime};
use amber::{Config, Error, ErrorKind, Result, Store, Value, ValueRef};
use serde_json::json;

/// Longest note, in bytes.
const MAX_NOTE_BYTES: usize = 4096;
/// Most notes one notebook holds.
const MAX_NOTES: i64 = 1000;

/// A notebook. No fields: the state is in `ctx.storage()`, so it survives
/// eviction, hibernation and restarts.
#[derive(Default)]
struct Notes;

impl ObjectClass for Notes {
    /// Runs on every activation. The schema is checked before it is
    /// created: even `CREATE TABLE IF NOT EXISTS` counts as a write, and
    /// would commit on every wake.
    fn start(&mut self, ctx: &mut Ctx<'_>) -> Result<()> {
        let obj = ctx.storage();
        let tables = obj
            .exec(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = 'notes'",
                &[],
            )?
            .one()?;
        if tables.get(0).and_then(Value::as_i64) == Some(0) {
            obj.exec(
                "CREATE TABLE notes (id INTEGER PRIMARY KEY, created_ms INTEGER NOT NULL, \
                 expires_ms INTEGER, body TEXT NOT NULL)",
                &[],
            )?;
            obj.exec(
                "CREATE INDEX notes_by_expiry ON notes (expires_ms) WHERE expires_ms IS NOT NULL",
                &[],
            )?;
        }
        Ok(())
    }

    /// `req.path` is what follows `/notes/{doc}` in the URL.
    fn fetch(&mut self, ctx: &mut Ctx<'_>, req: Request) -> Result<Response> {
        let rest = req.path.trim_matches('/').to_owned();
        match (req.method.as_str(), rest.as_str()) {
            ("GET", "") => list(ctx),
            ("POST", "") => add(ctx, req),
            ("GET", "stats") => stats(ctx),
            (method, id) => {
                let Ok(id) = id.parse::<i64>() else {
                    return Ok(Response::not_found());
                };
                match method {
                    "GET" => get(ctx, id),
                    "DELETE" => delete(ctx, id),
                    _ => Ok(Response::text(405, "method not allowed\n")),
                }
            }
        }
    }

    /// The earliest expiry came due: delete every expired note, count
    /// them, and set the alarm for the next expiry. These writes commit
    /// together; if they do not, the alarm fires again.
    fn alarm(&mut self, ctx: &mut Ctx<'_>, _alarm: &AlarmInfo) -> Result<()> {
        let now = ctx.now_ms() as i64;
        let obj = ctx.storage();
        let removed = obj
            .exec(
                "DELETE FROM notes WHERE expires_ms <= ?1 RETURNING id",
                &[now.into()],
            )?
            .to_vec()?
            .len() as i64;
        let expired = expired_count(ctx)? + removed;
        let obj = ctx.storage();
        obj.put("expired", expired.to_string().as_bytes())?;
        let next = obj
            .exec("SELECT min(expires_ms) FROM notes", &[])?
            .one()?
            .get(0)
            .and_then(Value::as_i64);
        if let Some(at) = next {
            obj.set_alarm_ms(at as u64)?;
        }
        Ok(())
    }
}

fn add(ctx: &mut Ctx<'_>, req: Request) -> Result<Response> {
    let bad_ttl = |_| Error::new(ErrorKind::InvalidInput, "ttl must be a number of seconds");
    let ttl_secs = match req.query_param("ttl") {
        None => None,
        Some(s) => Some(s.parse::<u32>().map_err(bad_ttl)?),
    };
    let Ok(text) = String::from_utf8(req.body) else {
        return Ok(Response::text(400, "a note is UTF-8 text\n"));
    };
    if text.trim().is_empty() || text.len() > MAX_NOTE_BYTES {
        return Ok(Response::text(400, "a note is 1 to 4096 bytes\n"));
    }
    let now = ctx.now_ms() as i64;
    let expires = ttl_secs.map(|s| now + i64::from(s) * 1000);
    let obj = ctx.storage();
    let count = obj
        .exec("SELECT count(*) FROM notes", &[])?
        .one()?
        .get(0)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if count >= MAX_NOTES {
        return Ok(Response::text(409, "this notebook is full\n"));
    }
    let id = obj
        .exec(
            "INSERT INTO notes (created_ms, expires_ms, body) VALUES (?1, ?2, ?3) RETURNING id",
            &[
                now.into(),
                expires.map_or(ValueRef::Null, ValueRef::Integer),
                (&text).into(),
            ],
        )?
        .one()?
        .get(0)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    // One alarm per object: keep it at the earliest expiry.
    if let Some(at) = expires {
        let at = at as u64;
        if obj.get_alarm_ms()?.is_none_or(|t| t > at) {
            obj.set_alarm_ms(at)?;
        }
    }
    let body = json!({"id": id, "expires_ms": expires}).to_string();
    Ok(Response::new(201, body).with_header("content-type", "application/json"))
}

fn list(ctx: &mut Ctx<'_>) -> Result<Response> {
    let rows = ctx
        .storage()
        .exec(
            "SELECT id, created_ms, expires_ms, body FROM notes ORDER BY id",
            &[],
        )?
        .to_vec()?;
    let notes: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.get(0).and_then(Value::as_i64),
                "created_ms": r.get(1).and_then(Value::as_i64),
                "expires_ms": r.get(2).and_then(Value::as_i64),
                "text": r.get(3).and_then(Value::as_str),
            })
        })
        .collect();
    Ok(Response::ok(json!(notes).to_string()).with_header("content-type", "application/json"))
}

fn get(ctx: &mut Ctx<'_>, id: i64) -> Result<Response> {
    let rows = ctx
        .storage()
        .exec("SELECT body FROM notes WHERE id = ?1", &[id.into()])?
        .to_vec()?;
    let text = rows.first().and_then(|r| r.get(0)).and_then(Value::as_str);
    Ok(text.map_or_else(Response::not_found, |t| Response::text(200, t)))
}

fn delete(ctx: &mut Ctx<'_>, id: i64) -> Result<Response> {
    let gone = ctx
        .storage()
        .exec("DELETE FROM notes WHERE id = ?1 RETURNING id", &[id.into()])?
        .to_vec()?;
    Ok(if gone.is_empty() {
        Response::not_found()
    } else {
        Response::text(200, "deleted\n")
    })
}

fn stats(ctx: &mut Ctx<'_>) -> Result<Response> {
    let notes = ctx
        .storage()
        .exec("SELECT count(*) FROM notes", &[])?
        .one()?
        .get(0)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let body = json!({"notes": notes, "expired": expired_count(ctx)?}).to_string();
    Ok(Response::ok(body).with_header("content-type", "application/json"))
}

/// How many notes the alarm has deleted, kept in the object's KV store.
fn expired_count(ctx: &mut Ctx<'_>) -> Result<i64> {
    Ok(ctx
        .storage()
        .get("expired")?
        .and_then(|b| String::from_utf8(b).ok()?.parse().ok())
        .unwrap_or(0))
}

const USAGE: &str = "usage: own_class [--data DIR] [--listen HOST:PORT]\n\
    (--data defaults to ./own-class-data; --listen to $AMBER_LISTEN, then 127.0.0.1:0)";

struct Args {
    data: PathBuf,
    listen: SocketAddr,
}

fn parse_args() -> std::result::Result<Args, String> {
    let mut data = PathBuf::from("./own-class-data");
    let mut listen = std::env::var("AMBER_LISTEN").ok();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--data" => data = args.next().ok_or("--data needs a directory")?.into(),
            "--listen" => listen = Some(args.next().ok_or("--listen needs HOST:PORT")?),
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unexpected argument `{other}` (try --help)")),
        }
    }
    let listen = listen.as_deref().unwrap_or("127.0.0.1:0");
    let listen = listen
        .parse()
        .map_err(|e| format!("bad listen address `{listen}`: {e}"))?;
    Ok(Args { data, listen })
}

fn main() -> Result<()> {
    let args = match parse_args() {
        Ok(a) => a,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    // The server logs through `tracing`; RUST_LOG=debug shows every request.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    // The user class is registered next to the built-in ones, on one
    // runtime over one store; each class is a namespace of objects.
    let store = Store::open(Config::new(&args.data))?;
    let rt = amber::server::with_builtin_classes(Runtime::builder(store))
        .class("notes", Notes::default)
        .start()?;

    let io = |what: &'static str| {
        move |e: std::io::Error| Error::new(ErrorKind::Io, format!("{what}: {e}"))
    };
    let tokio_rt = tokio::runtime::Runtime::new().map_err(io("start tokio"))?;
    tokio_rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(io("listen"))?;
        let addr = listener.local_addr().map_err(io("listener address"))?;
        println!(
            "own_class: serving {} on http://{addr}",
            args.data.display()
        );
        std::io::stdout().flush().map_err(io("stdout"))?;
        amber::server::serve(rt, listener, amber::server::shutdown_signal()).await
    })
}
