//! `kv`: a thin HTTP face over an object's KV API, for tests and tooling.
//!
//! | route | does |
//! |---|---|
//! | `GET /kv/{name}/{key}` | the value, or 404 |
//! | `PUT /kv/{name}/{key}` (or POST) | sets the value to the body |
//! | `DELETE /kv/{name}/{key}` | deletes; body `true` if the key existed |
//! | `GET /kv/{name}` | JSON `[[key, value], ...]`; query `prefix`, `start`, `end`, `limit`, `reverse` |
//! | `PUT /kv/{name}?alarm=MS` | sets the object's alarm; when it fires, key `alarm-fired` gets the time |

use crate::error::{Error, ErrorKind, Result};
use crate::object::ListOptions;
use crate::runtime::{AlarmInfo, Ctx, ObjectClass, Request, Response};

#[derive(Default)]
pub struct KvFace;

impl ObjectClass for KvFace {
    fn fetch(&mut self, ctx: &mut Ctx<'_>, req: Request) -> Result<Response> {
        let obj = ctx.storage();
        let key = req.path.strip_prefix('/').unwrap_or("");
        if key.is_empty() {
            return match req.method.as_str() {
                "GET" => list(obj, &req),
                "PUT" | "POST" => {
                    let ms = req
                        .query_param("alarm")
                        .and_then(|v| v.parse::<u64>().ok())
                        .ok_or_else(|| {
                            Error::new(ErrorKind::InvalidInput, "expected ?alarm=<ms since epoch>")
                        })?;
                    obj.set_alarm_ms(ms)?;
                    Ok(Response::text(200, "alarm set"))
                }
                _ => Ok(Response::text(405, "method not allowed\n")),
            };
        }
        match req.method.as_str() {
            "GET" => Ok(match obj.get(key)? {
                Some(v) => Response::ok(v),
                None => Response::not_found(),
            }),
            "PUT" | "POST" => {
                obj.put(key, &req.body)?;
                Ok(Response::text(200, "ok"))
            }
            "DELETE" => Ok(Response::text(200, obj.delete(key)?.to_string())),
            _ => Ok(Response::text(405, "method not allowed\n")),
        }
    }

    fn alarm(&mut self, ctx: &mut Ctx<'_>, alarm: &AlarmInfo) -> Result<()> {
        ctx.storage()
            .put("alarm-fired", alarm.scheduled_ms.to_string().as_bytes())
    }
}

fn list(obj: &mut crate::Object, req: &Request) -> Result<Response> {
    let mut opts = ListOptions::default();
    let owned = |k: &str| req.query_param(k).map(|s| s.to_owned());
    opts.prefix = owned("prefix");
    opts.start = owned("start");
    opts.end = owned("end");
    opts.reverse = req.query_param("reverse").is_some_and(|v| v == "true");
    if let Some(l) = req.query_param("limit") {
        opts.limit = Some(l.parse().map_err(|_| {
            Error::new(
                ErrorKind::InvalidInput,
                "limit must be a non-negative integer",
            )
        })?);
    }
    let rows: Vec<(String, String)> = obj
        .list(&opts)?
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect();
    let body = serde_json::to_vec(&rows)
        .map_err(|e| Error::new(ErrorKind::InvalidInput, format!("json: {e}")))?;
    Ok(Response::ok(body).with_header("content-type", "application/json"))
}
