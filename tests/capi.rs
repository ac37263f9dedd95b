//! The C ABI, from the outside: the checked-in header is what cbindgen
//! makes of src/capi today; C programs built with the system `cc` against
//! that header and the static library pass their checks, also under
//! valgrind; the embedding guide's example is the one that is compiled;
//! and the thread model holds when driven from Rust threads.
//!
//! Regenerate the header with
//! `AMBER_BLESS=1 cargo test --features capi --test capi header`.
#![cfg(feature = "capi")]

use std::ffi::CStr;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use amber::capi::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ---- the header ----------------------------------------------------------

fn generate_header() -> String {
    let config =
        cbindgen::Config::from_file(root().join("cbindgen.toml")).expect("cbindgen.toml parses");
    let bindings = cbindgen::Builder::new()
        .with_config(config)
        .with_src(root().join("src/capi/mod.rs"))
        .generate()
        .expect("cbindgen generates the header");
    let mut out = Vec::new();
    bindings.write(&mut out);
    String::from_utf8(out).expect("the header is UTF-8")
}

#[test]
fn header_is_generated_from_the_source_and_checked_in() {
    let fresh = generate_header();
    let path = root().join("include/amber.h");
    if std::env::var_os("AMBER_BLESS").is_some() {
        std::fs::write(&path, &fresh).expect("write include/amber.h");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "include/amber.h is stale: regenerate it with \
         `AMBER_BLESS=1 cargo test --features capi --test capi header` and commit it"
    );
    for name in [
        "amber_store_open",
        "amber_exec",
        "amber_kv_list",
        "amber_ticket_on_complete",
        "amber_alarm_set",
        "amber_store_restore",
        "amber_object_restore_on_next_open",
        "typedef struct AmberObject AmberObject;",
    ] {
        assert!(fresh.contains(name), "the header lacks {name}");
    }
}

// ---- building and running C ------------------------------------------------

/// The target directory this test binary was built in: `CARGO_TARGET_DIR`
/// when set, else found from the binary's own path
/// (`<target>[/<triple>]/<profile>/deps/<test>`).
fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            root().join(dir)
        };
    }
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors()
        .skip(1)
        .find(|d| d.join("CACHEDIR.TAG").exists())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| root().join("target"))
}

/// The static library to link: the one `cargo test` built together with
/// the library this test binary links, or else one cargo builds now.
fn static_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        let lib = built_with_this_test().unwrap_or_else(cargo_build_static_lib);
        eprintln!("linking C programs against {}", lib.display());
        lib
    })
}

fn mtime(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

/// `cargo test` compiles the library once for all its crate types, so
/// `libamber.a` sits beside this binary in `deps/`, written just after the
/// `libamber*.rlib` the binary links and before the binary itself. Anything
/// else (missing, or rewritten by a later build with other features) is
/// not trusted. `AMBER_CAPI_CARGO_BUILD=1` skips this and asks cargo.
fn built_with_this_test() -> Option<PathBuf> {
    if std::env::var_os("AMBER_CAPI_CARGO_BUILD").is_some() {
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let deps = exe.parent()?;
    let lib = deps.join("libamber.a");
    let rlib = std::fs::read_dir(deps)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libamber") && n.ends_with(".rlib"))
        })
        .filter_map(|p| mtime(&p))
        .max()?;
    let lib_time = mtime(&lib)?;
    (lib_time >= rlib && lib_time <= mtime(&exe)?).then_some(lib)
}

/// Builds (or finds fresh) the static library and returns its path, as
/// cargo reports it. Building the `capi` test target rather than the bare
/// library keeps the feature resolution identical to `cargo test`'s (dev-
/// dependencies unify features), so cargo finds fresh what `cargo test`
/// built instead of rebuilding it.
fn cargo_build_static_lib() -> PathBuf {
    let mut features = vec!["capi"];
    if cfg!(feature = "serde") {
        features.push("serde");
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root())
        .args(["build", "--test", "capi", "--message-format=json"])
        .arg("--features")
        .arg(features.join(","))
        .arg("--target-dir")
        .arg(target_dir());
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("run cargo build");
    assert!(
        out.status.success(),
        "cargo build failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    for line in stdout.lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" || msg["target"]["name"] != "amber" {
            continue;
        }
        let files = msg["filenames"].as_array().into_iter().flatten();
        for f in files.filter_map(|f| f.as_str()) {
            if f.ends_with(".a") {
                return newest_copy(Path::new(f));
            }
        }
    }
    panic!("cargo build did not report libamber.a:\n{stdout}");
}

/// Cargo reports the library at `<profile>/libamber.a`, a link to the real
/// output in `<profile>/deps/`. When the library was built by `cargo test`
/// and merely found fresh here, that link can still point at an older
/// build, so take whichever of the two is newer.
fn newest_copy(reported: &Path) -> PathBuf {
    let in_deps = reported
        .parent()
        .zip(reported.file_name())
        .map(|(dir, name)| dir.join("deps").join(name));
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    match in_deps {
        Some(d) if mtime(&d) > mtime(reported) => d,
        _ => reported.to_path_buf(),
    }
}

/// The files linked into a C program besides `<name>.c`.
fn extra_sources(name: &str) -> &'static [&'static str] {
    match name {
        "capi_test" => &["capi_pitr.c"],
        _ => &[],
    }
}

/// Compiles `tests/c/<name>.c` (and its `extra_sources`) against
/// include/amber.h and the static library, with warnings as errors.
fn compile_c(name: &str, out_dir: &Path) -> PathBuf {
    let dir = root().join("tests/c");
    let src = dir.join(format!("{name}.c"));
    let exe = out_dir.join(name);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-std=c11", "-g", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg("-I")
        .arg(root().join("include"))
        .arg(&src)
        .args(extra_sources(name).iter().map(|f| dir.join(f)))
        .arg(static_lib())
        .args(["-lpthread", "-ldl", "-lm"])
        .arg("-o")
        .arg(&exe)
        .output()
        .unwrap_or_else(|e| panic!("run {cc}: {e}"));
    assert!(
        out.status.success(),
        "{cc} failed on {}:\n{}{}",
        src.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

fn show(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout\n{}--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a compiled C program on a fresh data directory, optionally under a
/// wrapper command (valgrind).
fn run_c(name: &str, wrapper: &[&str]) -> Output {
    let tmp = tempfile::tempdir().expect("tempdir");
    let exe = compile_c(name, tmp.path());
    let data = tmp.path().join("data");
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    cmd.arg(&data).output().expect("run the C program")
}

#[test]
fn c_program_runs_open_sql_kv_turns_tickets_callbacks_close_pitr_and_hostile_input() {
    let out = run_c("capi_test", &[]);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(" passed, 0 failed"), "{}", show(&out));
}

fn valgrind_available() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn c_programs_are_clean_under_valgrind() {
    if !valgrind_available() {
        let required = std::env::var("AMBER_REQUIRE_VALGRIND").is_ok_and(|v| v == "1");
        // Straight to stderr, past the test harness's capture, so that the
        // skip shows in the log of a passing run.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: valgrind is not installed, so the C programs were not checked \
             for leaks and invalid accesses. Install it (apt-get install valgrind); \
             AMBER_REQUIRE_VALGRIND=1 turns this into a failure."
        );
        assert!(!required, "valgrind is required (AMBER_REQUIRE_VALGRIND=1)");
        return;
    }
    // See tests/c/valgrind.supp for the one allocation it suppresses.
    let supp = format!(
        "--suppressions={}",
        root().join("tests/c/valgrind.supp").display()
    );
    let wrapper = [
        "valgrind",
        "--error-exitcode=99",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite,indirect,possible",
        "--show-leak-kinds=definite,indirect,possible",
        supp.as_str(),
        "--quiet",
    ];
    for name in ["capi_test", "event_loop"] {
        let out = run_c(name, &wrapper);
        assert!(
            out.status.success(),
            "{name} under valgrind (99 = valgrind found errors):\n{}",
            show(&out)
        );
    }
}

// ---- the embedding guide ---------------------------------------------------

#[test]
fn embedding_guide_shows_the_compiled_example() {
    let guide = std::fs::read_to_string(root().join("docs/embedding.md")).expect("guide");
    let example = std::fs::read_to_string(root().join("tests/c/event_loop.c")).expect("example");
    let fenced = format!("```c\n{example}```");
    assert!(
        guide.contains(&fenced),
        "docs/embedding.md must include tests/c/event_loop.c verbatim in a ```c block"
    );
}

#[test]
fn embedding_guide_example_compiles_and_runs() {
    let out = run_c("event_loop", &[]);
    assert!(out.status.success(), "{}", show(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches("reply: hello").count(), 3, "{}", show(&out));
    assert!(stdout.contains("alarm: 3 visits so far"), "{}", show(&out));
}

// ---- the thread model, from Rust -------------------------------------------

fn msg(p: *const std::ffi::c_char) -> String {
    // SAFETY: amber returns NUL-terminated strings that live until the
    // next call on the handle; this copies one at once.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: *mut AmberStore,
    obj: *mut AmberObject,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = std::ffi::CString::new(dir.path().to_str().unwrap()).unwrap();
    let mut cfg = std::ptr::null_mut();
    let mut store = std::ptr::null_mut();
    let mut obj = std::ptr::null_mut();
    // SAFETY: valid C strings and out-pointers; every handle is freed in
    // `Drop for Fixture` or by the test that takes it.
    unsafe {
        assert_eq!(amber_config_new(path.as_ptr(), &mut cfg), AMBER_OK);
        assert_eq!(amber_store_open(cfg, &mut store), AMBER_OK);
        assert_eq!(amber_config_free(cfg), AMBER_OK);
        assert_eq!(
            amber_store_open_object(store, c"o".as_ptr(), 1, &mut obj),
            AMBER_OK
        );
    }
    Fixture {
        _dir: dir,
        store,
        obj,
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // SAFETY: both handles are live and used by no other thread now.
        unsafe {
            amber_object_free(self.obj);
            amber_store_free(self.store);
        }
    }
}

/// Moves a raw handle pointer into another thread for the test.
struct SendPtr<T>(*mut T);
// SAFETY: the C API promises handles may be passed between threads, and
// detects concurrent use; this wrapper only carries the pointer there.
unsafe impl<T> Send for SendPtr<T> {}

#[test]
fn a_turn_binds_the_object_to_its_thread_until_it_ends() {
    let f = fixture();
    // SAFETY: live handle, valid pointers.
    unsafe {
        assert_eq!(amber_object_begin_turn(f.obj), AMBER_OK);
        assert_eq!(
            amber_kv_put(f.obj, c"k".as_ptr(), 1, b"v".as_ptr(), 1, 0),
            AMBER_OK
        );
    }
    let p = SendPtr(f.obj);
    let code = std::thread::spawn(move || {
        let p = p;
        // SAFETY: the handle is live; the other thread holds its turn.
        unsafe { amber_kv_put(p.0, c"k".as_ptr(), 1, b"w".as_ptr(), 1, 0) }
    })
    .join()
    .unwrap();
    assert_eq!(code, AMBER_ERR_BUSY);
    let mut ticket = std::ptr::null_mut();
    // SAFETY: live handle, valid pointers.
    unsafe {
        // BUSY left this thread's message alone.
        assert_eq!(msg(amber_object_errmsg(f.obj)), "not an error");
        assert_eq!(amber_object_end_turn(f.obj, &mut ticket), AMBER_OK);
    }
    // The ticket crosses to another thread and is waited on there.
    let t = SendPtr(ticket);
    let (code, seq) = std::thread::spawn(move || {
        let t = t;
        let mut seq = 0;
        // SAFETY: the ticket handle moved here and is freed here.
        let code = unsafe { amber_ticket_wait(t.0, 10_000, &mut seq) };
        // SAFETY: as above.
        unsafe { amber_ticket_free(t.0) };
        (code, seq)
    })
    .join()
    .unwrap();
    assert_eq!((code, seq), (AMBER_OK, 1));
    // After the turn, another thread may use the handle.
    let p = SendPtr(f.obj);
    let code = std::thread::spawn(move || {
        let p = p;
        let mut found = false;
        let mut value = AmberBytes {
            data: std::ptr::null_mut(),
            len: 0,
        };
        // SAFETY: live handle, no turn held by anyone.
        let code = unsafe { amber_kv_get(p.0, c"k".as_ptr(), 1, &mut value, &mut found) };
        assert!(found);
        // SAFETY: filled by amber_kv_get just above.
        unsafe { amber_bytes_free(&mut value) };
        code
    })
    .join()
    .unwrap();
    assert_eq!(code, AMBER_OK);
}

#[test]
fn concurrent_calls_on_one_object_are_refused_not_raced() {
    let f = fixture();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let p = SendPtr(f.obj);
            std::thread::spawn(move || {
                let p = p;
                let (mut ok, mut busy) = (0, 0);
                for j in 0..200u32 {
                    let key = format!("t{i}-{j}");
                    // SAFETY: live handle; concurrent use is what is tested.
                    let code = unsafe {
                        amber_kv_put(p.0, key.as_ptr().cast(), key.len(), b"v".as_ptr(), 1, 0)
                    };
                    match code {
                        AMBER_OK => ok += 1,
                        AMBER_ERR_BUSY => busy += 1,
                        other => panic!("unexpected code {other}"),
                    }
                }
                (ok, busy)
            })
        })
        .collect();
    let mut total_ok = 0;
    for t in threads {
        let (ok, busy) = t.join().unwrap();
        assert_eq!(ok + busy, 200);
        total_ok += ok;
    }
    let mut list = std::ptr::null_mut();
    // SAFETY: live handle, valid out-pointer; the list is freed below.
    unsafe {
        assert_eq!(amber_kv_list(f.obj, std::ptr::null(), &mut list), AMBER_OK);
        assert_eq!(amber_kv_list_len(list), total_ok);
        amber_kv_list_free(list);
    }
}

struct CallbackProbe {
    store: *mut AmberStore,
    obj: *mut AmberObject,
    tx: std::sync::mpsc::SyncSender<(AmberCode, AmberCode)>,
}

unsafe extern "C" fn free_from_callback(
    user: *mut std::ffi::c_void,
    _code: AmberCode,
    _seq: u64,
    _msg: *const std::ffi::c_char,
) {
    // SAFETY: `user` is the probe the test boxed for this one callback.
    let probe = unsafe { Box::from_raw(user.cast::<CallbackProbe>()) };
    // SAFETY: both handles stay live until the test frees them, after this
    // callback has reported back.
    let codes = unsafe { (amber_store_free(probe.store), amber_object_free(probe.obj)) };
    let _ = probe.tx.send(codes);
}

#[test]
fn freeing_a_store_or_object_from_a_ticket_callback_is_refused() {
    let f = fixture();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let probe = Box::new(CallbackProbe {
        store: f.store,
        obj: f.obj,
        tx,
    });
    // SAFETY: live handles and valid pointers; the probe is handed to the
    // callback, which frees it.
    unsafe {
        assert_eq!(
            amber_kv_put(f.obj, c"k".as_ptr(), 1, b"v".as_ptr(), 1, 0),
            AMBER_OK
        );
        let mut ticket = std::ptr::null_mut();
        assert_eq!(amber_object_end_turn(f.obj, &mut ticket), AMBER_OK);
        let user = Box::into_raw(probe).cast();
        assert_eq!(
            amber_ticket_on_complete(ticket, Some(free_from_callback), user),
            AMBER_OK
        );
        assert_eq!(amber_ticket_free(ticket), AMBER_OK);
    }
    let codes = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the callback ran");
    assert_eq!(codes, (AMBER_ERR_MISUSE, AMBER_ERR_MISUSE));
}

unsafe extern "C" fn pitr_from_callback(
    user: *mut std::ffi::c_void,
    _code: AmberCode,
    _seq: u64,
    _msg: *const std::ffi::c_char,
) {
    // SAFETY: `user` is the probe the test boxed for this one callback.
    let probe = unsafe { Box::from_raw(user.cast::<CallbackProbe>()) };
    let mut buf = [0 as std::ffi::c_char; AMBER_BOOKMARK_SIZE];
    let mut ok = false;
    // SAFETY: the store handle stays live until the test frees it, after
    // this callback has reported back; the buffers are valid.
    let codes = unsafe {
        (
            amber_store_bookmark_for_time(
                probe.store,
                c"o".as_ptr(),
                1,
                0,
                buf.as_mut_ptr(),
                buf.len(),
            ),
            amber_store_verify(probe.store, c"o".as_ptr(), 1, &mut ok, std::ptr::null_mut()),
        )
    };
    let _ = probe.tx.send(codes);
}

#[test]
fn pitr_calls_from_a_ticket_callback_are_refused() {
    let f = fixture();
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let probe = Box::new(CallbackProbe {
        store: f.store,
        obj: f.obj,
        tx,
    });
    // SAFETY: live handles and valid pointers; the probe is handed to the
    // callback, which frees it.
    unsafe {
        assert_eq!(
            amber_kv_put(f.obj, c"k".as_ptr(), 1, b"v".as_ptr(), 1, 0),
            AMBER_OK
        );
        let mut ticket = std::ptr::null_mut();
        assert_eq!(amber_object_end_turn(f.obj, &mut ticket), AMBER_OK);
        let user = Box::into_raw(probe).cast();
        assert_eq!(
            amber_ticket_on_complete(ticket, Some(pitr_from_callback), user),
            AMBER_OK
        );
        assert_eq!(amber_ticket_free(ticket), AMBER_OK);
    }
    let codes = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the callback ran");
    assert_eq!(codes, (AMBER_ERR_MISUSE, AMBER_ERR_MISUSE));
    // SAFETY: live handle; the message is copied at once.
    assert!(msg(unsafe { amber_store_errmsg(f.store) }).contains("ticket callback"));
}
