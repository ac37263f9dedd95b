//! The chat page in headless Chromium (tests/browser/chat.mjs). Needs
//! Debian's `chromium` and `playwright-core` from npm, so it runs only with
//! AMBER_BROWSER_TEST=1 (set NODE_PATH to the node_modules holding
//! playwright-core if it is not under the repository). Without the variable
//! it reports that it did not run; with it, a missing tool is a failure.

use std::process::Command;

#[test]
fn chat_page_in_headless_chromium() {
    if std::env::var_os("AMBER_BROWSER_TEST").is_none() {
        eprintln!("skipped: set AMBER_BROWSER_TEST=1 to run the Chromium test");
        return;
    }
    let out = Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/browser/chat.mjs"
        ))
        .arg(env!("CARGO_BIN_EXE_amber"))
        .output()
        .expect("node is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("chat browser test: ok"),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
