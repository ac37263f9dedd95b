//! `counter`: the object workerd's peer counter (`../shared/peers/counter.js`)
//! implements, for side-by-side measurements.
//!
//! | route | does |
//! |---|---|
//! | `POST /counter/{name}/increment` (GET too, for `wrk`) | SQL read-modify-write; returns the new value |
//! | `GET /counter/{name}`, `GET /counter/{name}/read` | SQL read; returns the value |
//! | `POST /counter/{name}/kv` (GET too) | KV increment of key `n`; returns the new value |

use crate::error::Result;
use crate::runtime::{Ctx, ObjectClass, Request, Response};

#[derive(Default)]
pub struct Counter;

impl ObjectClass for Counter {
    fn start(&mut self, ctx: &mut Ctx<'_>) -> Result<()> {
        let obj = ctx.storage();
        if !super::table_exists(obj, "c")? {
            obj.exec(
                "CREATE TABLE c (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)",
                &[],
            )?;
            obj.exec("INSERT INTO c VALUES (1, 0)", &[])?;
        }
        Ok(())
    }

    fn fetch(&mut self, ctx: &mut Ctx<'_>, req: Request) -> Result<Response> {
        let obj = ctx.storage();
        let v = match (req.method.as_str(), req.path.as_str()) {
            ("GET" | "POST", "/increment") => obj
                .exec("UPDATE c SET v = v + 1 WHERE id = 1 RETURNING v", &[])?
                .one()?
                .get(0)
                .and_then(|v| v.as_i64())
                .unwrap_or(0),
            ("GET", "" | "/" | "/read") => obj
                .exec("SELECT v FROM c WHERE id = 1", &[])?
                .one()?
                .get(0)
                .and_then(|v| v.as_i64())
                .unwrap_or(0),
            ("GET" | "POST", "/kv") => {
                let n = obj
                    .get("n")?
                    .and_then(|b| std::str::from_utf8(&b).ok()?.parse::<i64>().ok())
                    .unwrap_or(0)
                    + 1;
                obj.put("n", n.to_string().as_bytes())?;
                n
            }
            _ => return Ok(Response::not_found()),
        };
        Ok(Response::text(200, v.to_string()))
    }
}
