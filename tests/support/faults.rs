//! Shared by the disk-fault tests (`io_faults`, `power_cut`) and the
//! power-cut simulations (`power_loss`, `delete`): an object workload of
//! whole turns under `FaultVfs`, and marking journal files as rebooted.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use amber::testing::FaultVfs;
use amber::{BucketConfig, Config, Object, Tuning, ValueRef};

/// No bucket; object files through `FaultVfs`; checkpoints every few
/// pages, so syncs and truncates of the database and WAL come up too.
pub fn vfs_config(dir: &Path) -> Config {
    Config::new(dir)
        .with_bucket(BucketConfig::Disabled)
        .with_tuning(Tuning {
            checkpoint_pages: 8,
            sqlite_vfs: Some(FaultVfs::NAME.to_string()),
            ..Tuning::default()
        })
}

/// Turn `i`'s value: a few KB, different per turn.
pub fn value(i: u32) -> Vec<u8> {
    format!("turn {i} ")
        .repeat(60 + i as usize * 23)
        .into_bytes()
}

/// Turn `i`'s value for the journal-heavy workloads: 12 KiB that do not
/// compress, different per turn.
pub fn noise(i: u32) -> Vec<u8> {
    let mut rng = amber::testing::SplitMix::new(u64::from(i) + 1);
    (0..12 << 10).map(|_| rng.next_u64() as u8).collect()
}

/// Creates the table the turns write to, as its own turn.
pub fn create_table(o: &mut Object) -> amber::Result<()> {
    o.exec(
        "CREATE TABLE IF NOT EXISTS t (i INTEGER PRIMARY KEY, v BLOB)",
        &[],
    )?;
    o.end_turn()?.wait()?;
    Ok(())
}

/// One turn: key `k{i}` and row `i`, committed together, waited for.
pub fn turn(o: &mut Object, i: u32) -> amber::Result<()> {
    turn_of(o, i, value)
}

/// As [`turn`], with the values from `value`.
pub fn turn_of(o: &mut Object, i: u32, value: fn(u32) -> Vec<u8>) -> amber::Result<()> {
    let v = value(i);
    o.put(&format!("k{i}"), &v)?;
    o.exec(
        "INSERT INTO t (i, v) VALUES (?, ?)",
        &[ValueRef::Integer(i64::from(i)), ValueRef::Blob(&v)],
    )?;
    o.end_turn()?.wait_timeout(Duration::from_secs(30))?;
    Ok(())
}

/// The turns below `turns` present in the object, each checked whole:
/// panics on a turn with only its key or only its row, or a damaged value.
pub fn present(o: &mut Object, turns: u32) -> Vec<u32> {
    present_of(o, turns, value)
}

/// As [`present`], with the values from `value`.
pub fn present_of(o: &mut Object, turns: u32, value: fn(u32) -> Vec<u8>) -> Vec<u32> {
    let mut out = Vec::new();
    for i in 0..turns {
        let kv = o.get(&format!("k{i}")).unwrap();
        let rows = o
            .exec(
                "SELECT count(*) FROM t WHERE i = ? AND v = ?",
                &[ValueRef::Integer(i64::from(i)), ValueRef::Blob(&value(i))],
            )
            .unwrap()
            .one()
            .unwrap()
            .get(0)
            .unwrap()
            .as_i64()
            .unwrap();
        match (kv, rows) {
            (Some(v), 1) if v[..] == value(i)[..] => out.push(i),
            (None, 0) => {}
            (kv, rows) => panic!(
                "turn {i} is half there or damaged: kv {:?}, rows {rows}",
                kv.map(|v| v.len())
            ),
        }
    }
    out
}

/// Marks a journal file as written in an earlier boot (docs/format.md:
/// bytes 12..28 hold the boot id, 28..32 a CRC-32 of bytes 0..28).
pub fn from_earlier_boot(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    if b.len() < 32 {
        return;
    }
    b[12..28].fill(0);
    let crc = crc32fast::hash(&b[..28]);
    b[28..32].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, b).unwrap();
}

/// Every journal file of the store at `data`, marked as from an earlier
/// boot, as a reboot leaves them (none if no commit ever made one).
pub fn reboot_journal(data: &Path) {
    let journal = std::fs::read_dir(data.join("journal"));
    for e in journal.into_iter().flatten().flatten() {
        if e.path().extension().is_some_and(|x| x == "jnl") {
            from_earlier_boot(&e.path());
        }
    }
}
