//! An object class written by a user, run on amber's runtime without the
//! HTTP server: a bank account per name, transfers between accounts as RPC
//! messages, and a daily-interest alarm.
//!
//! Run: `cargo run --example embedded_objects`

use amber::runtime::{AlarmInfo, Ctx, ObjectClass, Request, Response, Runtime};
use amber::{Config, Error, ErrorKind, Result, Store};

#[derive(Default)]
struct Account;

fn balance(ctx: &mut Ctx<'_>) -> Result<i64> {
    Ok(ctx
        .storage()
        .get("balance")?
        .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
        .unwrap_or(0))
}

fn set_balance(ctx: &mut Ctx<'_>, v: i64) -> Result<()> {
    ctx.storage().put("balance", &v.to_le_bytes())
}

impl ObjectClass for Account {
    fn fetch(&mut self, ctx: &mut Ctx<'_>, req: Request) -> Result<Response> {
        let amount: i64 = req
            .query_param("amount")
            .unwrap_or("0")
            .parse()
            .map_err(|_| Error::new(ErrorKind::InvalidInput, "amount must be an integer"))?;
        match req.path.as_str() {
            "/deposit" => {
                let b = balance(ctx)? + amount;
                set_balance(ctx, b)?;
                // Interest is paid a day after the first deposit.
                if ctx.storage().get_named_alarm_ms("interest")?.is_none() {
                    let at = ctx.now_ms() + 86_400_000;
                    ctx.storage().set_named_alarm_ms("interest", at)?;
                }
                Ok(Response::ok(b.to_string()))
            }
            "/transfer" => {
                let b = balance(ctx)?;
                if b < amount {
                    return Ok(Response::text(409, "insufficient funds"));
                }
                // The debit and the outgoing message are one turn: the credit
                // is sent only once the debit is durable.
                set_balance(ctx, b - amount)?;
                let to = req.query_param("to").unwrap_or("");
                let ns = ctx.namespace("account")?;
                let stub = ns.get(&ns.id_from_name(to)?)?;
                ctx.tell(&stub, "credit", amount.to_le_bytes().to_vec());
                Ok(Response::ok((b - amount).to_string()))
            }
            "/balance" => Ok(Response::ok(balance(ctx)?.to_string())),
            _ => Ok(Response::not_found()),
        }
    }

    fn call(&mut self, ctx: &mut Ctx<'_>, method: &str, body: Vec<u8>) -> Result<Vec<u8>> {
        match method {
            "credit" => {
                let amount = i64::from_le_bytes(body.try_into().unwrap_or([0; 8]));
                let b = balance(ctx)? + amount;
                set_balance(ctx, b)?;
                Ok(b.to_le_bytes().to_vec())
            }
            _ => Err(Error::new(ErrorKind::InvalidInput, "unknown method")),
        }
    }

    fn alarm(&mut self, ctx: &mut Ctx<'_>, alarm: &AlarmInfo) -> Result<()> {
        let b = balance(ctx)?;
        set_balance(ctx, b + b / 100)?;
        println!("{:?}: paid interest (alarm `{}`)", ctx.name(), alarm.name);
        Ok(())
    }
}

fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("amber-example-{}", std::process::id()));
    let store = Store::open(Config::new(&dir))?;
    let rt = Runtime::builder(store)
        .class("account", Account::default)
        .start()?;
    let ns = rt.namespace("account")?;
    let alice = ns.get(&ns.id_from_name("alice")?)?;
    let bob = ns.get(&ns.id_from_name("bob")?)?;

    // Each reply arrives only once its turn is durable on disk.
    alice
        .fetch(Request::new("POST", "/deposit?amount=100"))
        .wait()?;
    let left = alice
        .fetch(Request::new("POST", "/transfer?amount=30&to=bob"))
        .wait()?;
    println!(
        "alice after transfer: {}",
        String::from_utf8_lossy(&left.body)
    );
    // The credit is a message to bob; poll until it has landed.
    let bob_balance = loop {
        let r = bob.fetch(Request::new("GET", "/balance")).wait()?;
        let v = String::from_utf8_lossy(&r.body).into_owned();
        if v != "0" {
            break v;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    println!("bob: {bob_balance}");
    rt.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
