//! The KV API: ordering, list options, multi-key operations, limits, cache.

mod common;

use amber::{ErrorKind, ListOptions, ReadOptions, WriteOptions};
use common::{store, store_with};

fn keys(v: &[(String, Vec<u8>)]) -> Vec<&str> {
    v.iter().map(|(k, _)| k.as_str()).collect()
}

#[test]
fn given_writes_when_reading_in_the_same_turn_then_reads_see_them() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    assert_eq!(o.get("k").unwrap(), None);
    o.put("k", b"1").unwrap();
    o.put("k", b"2").unwrap();
    assert_eq!(o.get("k").unwrap().as_deref(), Some(&b"2"[..]));
    assert!(o.delete("k").unwrap());
    assert_eq!(o.get("k").unwrap(), None);
    assert!(!o.delete("k").unwrap());
    o.put("k", b"3").unwrap();
    o.end_turn().unwrap().wait().unwrap();
    drop(o);
    let mut o = s.open_object("a").unwrap();
    assert_eq!(o.get("k").unwrap().as_deref(), Some(&b"3"[..]));
}

#[test]
fn keys_order_by_utf8_bytes() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    // Code point order, which is UTF-8 byte order, not UTF-16 order:
    // U+FF5E sorts before U+1F600 in UTF-8 but after it in UTF-16.
    let ks = ["b", "a", "\u{1F600}", "\u{FF5E}", "A", "", "ab", "a\u{0}"];
    for k in ks {
        o.put(k, k.as_bytes()).unwrap();
    }
    let mut want: Vec<&str> = ks.to_vec();
    want.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    let got = o.list(&ListOptions::default()).unwrap();
    assert_eq!(keys(&got), want);
    o.end_turn().unwrap();
    assert_eq!(keys(&o.list(&ListOptions::default()).unwrap()), want);
}

#[test]
fn list_options_bound_the_range() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    for k in ["a", "b", "ba", "bb", "bc", "c", "d"] {
        o.put(k, b"v").unwrap();
    }
    let l = |o: &mut amber::Object, opts: ListOptions| {
        keys(&o.list(&opts).unwrap())
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(l(&mut o, ListOptions::prefix("b")), ["b", "ba", "bb", "bc"]);
    assert_eq!(
        l(
            &mut o,
            ListOptions {
                start: Some("b".into()),
                end: Some("c".into()),
                ..Default::default()
            }
        ),
        ["b", "ba", "bb", "bc"]
    );
    assert_eq!(
        l(
            &mut o,
            ListOptions {
                start_after: Some("b".into()),
                end: Some("c".into()),
                ..Default::default()
            }
        ),
        ["ba", "bb", "bc"]
    );
    assert_eq!(
        l(
            &mut o,
            ListOptions {
                prefix: Some("b".into()),
                reverse: true,
                limit: Some(2),
                ..Default::default()
            }
        ),
        ["bc", "bb"]
    );
    assert_eq!(
        l(
            &mut o,
            ListOptions {
                start: Some("c".into()),
                reverse: true,
                ..Default::default()
            }
        ),
        ["d", "c"]
    );
    assert_eq!(
        l(
            &mut o,
            ListOptions {
                start: Some("c".into()),
                end: Some("b".into()),
                ..Default::default()
            }
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        l(
            &mut o,
            ListOptions {
                limit: Some(0),
                ..Default::default()
            }
        ),
        Vec::<String>::new()
    );
    assert_eq!(
        l(
            &mut o,
            ListOptions {
                prefix: Some("b".into()),
                start_after: Some("bb".into()),
                ..Default::default()
            }
        ),
        ["bc"]
    );
}

#[test]
fn get_many_is_sorted_and_put_many_is_all_or_nothing() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    o.put_many(&[("z", b"1"), ("m", b"2"), ("a", b"3")])
        .unwrap();
    let got = o.get_many(&["z", "nope", "a", "m", "a"]).unwrap();
    assert_eq!(keys(&got), ["a", "m", "z"]);
    let huge = vec![0u8; 128 * 1024 + 1];
    let err = o.put_many(&[("ok", b"x"), ("big", &huge)]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded);
    assert_eq!(
        o.get("ok").unwrap(),
        None,
        "nothing of a failed put_many is applied"
    );
    assert_eq!(o.delete_many(&["a", "m", "missing"]).unwrap(), 2);
}

#[test]
fn key_and_value_limits_are_typed_and_configurable() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    let long_key = "k".repeat(2049);
    assert_eq!(
        o.put(&long_key, b"v").unwrap_err().kind(),
        ErrorKind::LimitExceeded
    );
    assert_eq!(
        o.get(&long_key).unwrap_err().kind(),
        ErrorKind::LimitExceeded
    );
    o.put(&"k".repeat(2048), &vec![1u8; 128 * 1024]).unwrap();
    o.end_turn().unwrap().wait().unwrap();

    let (_d2, s2) = store_with(|c| {
        c.limits.max_key_bytes = 4;
        c.limits.max_value_bytes = 8;
    });
    let mut o = s2.open_object("a").unwrap();
    assert!(o.put("abcd", b"12345678").is_ok());
    assert_eq!(
        o.put("abcde", b"1").unwrap_err().kind(),
        ErrorKind::LimitExceeded
    );
    assert_eq!(
        o.put("a", b"123456789").unwrap_err().kind(),
        ErrorKind::LimitExceeded
    );
}

#[test]
fn delete_all_wipes_kv_sql_and_alarm() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    o.put("k", b"v").unwrap();
    o.exec(
        "CREATE TABLE t (x); CREATE INDEX ti ON t(x); CREATE VIEW v AS SELECT * FROM t;",
        &[],
    )
    .unwrap();
    o.exec("CREATE VIRTUAL TABLE f USING fts5(body)", &[])
        .unwrap();
    o.set_alarm_ms(123).unwrap();
    o.end_turn().unwrap().wait().unwrap();
    o.delete_all().unwrap();
    assert_eq!(o.get("k").unwrap(), None);
    assert_eq!(o.get_alarm_ms().unwrap(), None);
    o.end_turn().unwrap().wait().unwrap();
    drop(o);
    let mut o = s.open_object("a").unwrap();
    let n = o
        .exec(
            "SELECT count(*) FROM sqlite_schema WHERE name NOT LIKE '\\_amber\\_%' ESCAPE '\\'",
            &[],
        )
        .unwrap()
        .one()
        .unwrap();
    assert_eq!(n.get(0).unwrap().as_i64(), Some(0));
    assert_eq!(o.list(&ListOptions::default()).unwrap().len(), 0);
    assert_eq!(o.get_alarm_ms().unwrap(), None);
    // The object is usable afterwards.
    o.exec("CREATE TABLE t (x)", &[]).unwrap();
}

#[test]
fn cache_stays_within_its_byte_budget() {
    let (_d, s) = store_with(|c| c.tuning.kv_cache_bytes = 64 * 1024);
    let mut o = s.open_object("a").unwrap();
    let v = vec![7u8; 1000];
    for i in 0..1000 {
        o.put(&format!("k{i:04}"), &v).unwrap();
        if i % 50 == 0 {
            o.end_turn().unwrap();
        }
    }
    o.end_turn().unwrap();
    for i in 0..1000 {
        assert_eq!(o.get(&format!("k{i:04}")).unwrap().unwrap().len(), 1000);
    }
    assert!(
        o.cache_bytes() <= 64 * 1024,
        "cache holds {} bytes",
        o.cache_bytes()
    );
    assert!(
        o.cache_bytes() > 32 * 1024,
        "cache is used: {} bytes",
        o.cache_bytes()
    );
}

#[test]
fn no_cache_reads_still_see_the_turns_writes() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    o.put_with(
        "k",
        b"v",
        WriteOptions {
            no_cache: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        o.get_with("k", ReadOptions { no_cache: true })
            .unwrap()
            .as_deref(),
        Some(&b"v"[..])
    );
    o.end_turn().unwrap();
    assert_eq!(o.cache_bytes(), 0);
    assert_eq!(
        o.get_with("k", ReadOptions { no_cache: true })
            .unwrap()
            .as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(o.cache_bytes(), 0);
    o.get("k").unwrap();
    assert!(o.cache_bytes() > 0);
}

#[test]
fn unconfirmed_writes_do_not_hold_the_gate_but_sync_waits_for_them() {
    let (_d, s) = store();
    let mut o = s.open_object("a").unwrap();
    o.put("a", b"1").unwrap();
    let t1 = o.end_turn().unwrap();
    assert_eq!(t1.seq(), 1);
    o.put_with(
        "b",
        b"2",
        WriteOptions {
            allow_unconfirmed: true,
            ..Default::default()
        },
    )
    .unwrap();
    let t2 = o.end_turn().unwrap();
    assert_eq!(t2.seq(), 1, "the gate only waits for confirmed writes");
    assert_eq!(o.seq(), 2, "the unconfirmed write still committed");
    let all = o.sync().unwrap();
    assert_eq!(all.wait().unwrap(), 2);
}
