//! The `amber` command line: inspect and change objects in a data
//! directory. Every writing command waits for its commit's ticket before
//! it exits, and reports the commit's sequence number.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use amber::{Config, Error, ErrorKind, ListOptions, Store, Value};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "amber", version, about = "Per-object transactional storage")]
struct Cli {
    /// Data directory of the store.
    #[arg(long, global = true, default_value = "./amber-data")]
    data: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
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
    /// List the store's objects.
    Objects,
}

#[derive(Subcommand)]
enum KvCmd {
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
    let store = Store::open(Config::new(&cli.data))?;
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
        Cmd::Kv { op } => run_kv(&store, op, &mut out)?,
        Cmd::Objects => {
            for o in store.list_objects()? {
                writeln!(out, "{}\t{}", o.id, o.name).map_err(io)?;
            }
        }
    }
    Ok(())
}

fn run_kv(store: &Store, op: KvCmd, out: &mut impl Write) -> Result<(), Error> {
    match op {
        KvCmd::Get { object, key, hex } => {
            let mut obj = store.open_object(&object)?;
            match obj.get(&key)? {
                Some(v) => writeln!(out, "{}", render(&v, hex)).map_err(io)?,
                None => {
                    return Err(Error::new(
                        ErrorKind::InvalidInput,
                        format!("key `{key}` not found"),
                    ))
                }
            }
        }
        KvCmd::Put {
            object,
            key,
            value,
            hex,
        } => {
            let bytes = if hex {
                parse_hex(&value)?
            } else {
                value.into_bytes()
            };
            let mut obj = store.open_object(&object)?;
            obj.put(&key, &bytes)?;
            let seq = obj.end_turn()?.wait()?;
            writeln!(out, "committed seq {seq}").map_err(io)?;
            obj.close()?;
        }
        KvCmd::Delete { object, key } => {
            let mut obj = store.open_object(&object)?;
            let existed = obj.delete(&key)?;
            let seq = obj.end_turn()?.wait()?;
            writeln!(
                out,
                "{} (committed seq {seq})",
                if existed { "deleted" } else { "not found" }
            )
            .map_err(io)?;
            obj.close()?;
        }
        KvCmd::List {
            object,
            prefix,
            start,
            start_after,
            end,
            reverse,
            limit,
            hex,
        } => {
            let mut obj = store.open_object(&object)?;
            let opts = ListOptions {
                start,
                start_after,
                end,
                prefix,
                reverse,
                limit,
            };
            for (k, v) in obj.list(&opts)? {
                writeln!(out, "{k}\t{}", render(&v, hex)).map_err(io)?;
            }
        }
    }
    Ok(())
}

fn io(e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("write to stdout: {e}"))
}

fn parse_param(p: &str) -> Result<Value, Error> {
    let bad = |what: &str| {
        Error::new(
            ErrorKind::InvalidInput,
            format!("parameter `{p}` is not {what}"),
        )
    };
    if let Some(r) = p.strip_prefix("i:") {
        return r.parse().map(Value::Integer).map_err(|_| bad("an integer"));
    }
    if let Some(r) = p.strip_prefix("f:") {
        return r.parse().map(Value::Real).map_err(|_| bad("a real"));
    }
    if let Some(r) = p.strip_prefix("s:") {
        return Ok(Value::Text(r.to_owned()));
    }
    if let Some(r) = p.strip_prefix("x:") {
        return parse_hex(r).map(Value::Blob);
    }
    if p.eq_ignore_ascii_case("null") {
        return Ok(Value::Null);
    }
    if let Ok(i) = p.parse::<i64>() {
        return Ok(Value::Integer(i));
    }
    if let Ok(f) = p.parse::<f64>() {
        if f.is_finite() {
            return Ok(Value::Real(f));
        }
    }
    Ok(Value::Text(p.to_owned()))
}

fn parse_hex(s: &str) -> Result<Vec<u8>, Error> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("`{s}` is not hex"),
        ));
    }
    Ok((0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("checked hex"))
        .collect())
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn render(v: &[u8], as_hex: bool) -> String {
    if as_hex {
        return hex(v);
    }
    match std::str::from_utf8(v) {
        Ok(s) => s.to_owned(),
        Err(_) => format!("x:{}", hex(v)),
    }
}

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "NULL".into(),
        Value::Integer(i) => i.to_string(),
        Value::Real(r) => r.to_string(),
        Value::Text(s) => s.clone(),
        Value::Blob(b) => format!("x'{}'", hex(b)),
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Integer(i) => (*i).into(),
        Value::Real(r) => serde_json::Number::from_f64(*r)
            .map(serde_json::Value::Number)
            .unwrap_or(serde_json::Value::Null),
        Value::Text(s) => s.clone().into(),
        Value::Blob(b) => hex(b).into(),
    }
}

fn print_table(out: &mut impl Write, columns: &[String], rows: &[amber::Row]) -> Result<(), Error> {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.values().iter().map(cell).collect())
        .collect();
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for r in &cells {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |vals: &[String]| {
        vals.iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    writeln!(out, "{}", line(columns)).map_err(io)?;
    writeln!(
        out,
        "{}",
        widths
            .iter()
            .map(|w| "-".repeat(*w))
            .collect::<Vec<_>>()
            .join("-+-")
    )
    .map_err(io)?;
    for r in &cells {
        writeln!(out, "{}", line(r)).map_err(io)?;
    }
    Ok(())
}
