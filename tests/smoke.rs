use amber::{Config, ErrorKind, ListOptions, Store, Value};

#[test]
fn smoke() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Config::new(dir.path())).unwrap();
    let mut o = store.open_object("room").unwrap();
    o.exec("CREATE TABLE t (a INTEGER, b TEXT)", &[]).unwrap();
    o.exec("INSERT INTO t VALUES (?1, ?2)", &[1.into(), "x".into()])
        .unwrap();
    o.put("k1", b"v1").unwrap();
    assert_eq!(o.get("k1").unwrap().as_deref(), Some(&b"v1"[..]));
    let t = o.end_turn().unwrap();
    assert_eq!(t.wait().unwrap(), 1);
    let rows = o.exec("SELECT a, b FROM t", &[]).unwrap().to_vec().unwrap();
    assert_eq!(rows[0].get(0), Some(&Value::Integer(1)));
    let l = o.list(&ListOptions::default()).unwrap();
    assert_eq!(l.len(), 1);
    let e = o.exec("BEGIN", &[]).err().unwrap();
    assert_eq!(e.kind(), ErrorKind::NotAllowed, "{e}");
    println!("{e}");
    drop(o);
    let mut o = store.open_object("room").unwrap();
    assert_eq!(o.seq(), 1);
    assert_eq!(o.get("k1").unwrap().as_deref(), Some(&b"v1"[..]));
}
