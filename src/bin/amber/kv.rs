//! `amber kv ...`

use std::io::Write;

use amber::{Error, ErrorKind, ListOptions, Store};

use crate::output::{io, parse_hex, render};
use crate::KvCmd;

pub(crate) fn run_kv(store: &Store, op: KvCmd, out: &mut impl Write) -> Result<(), Error> {
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
