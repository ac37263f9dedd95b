// The chat page end to end in headless Chromium: two tabs, a message typed
// in one appears in the other, and the history survives a server restart.
//
//   node tests/browser/chat.mjs AMBER_BIN
//
// Needs Debian's `chromium` and `playwright-core` from npm (resolvable from
// this directory or via NODE_PATH). tests/server_browser.rs runs it when
// AMBER_BROWSER_TEST=1.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";

const require = createRequire(join(process.cwd(), "noop.js"));
const { chromium } = require("playwright-core");
const amber = process.argv[2];
const data = mkdtempSync(join(tmpdir(), "amber-browser-"));

function startServer() {
  return new Promise((resolve, reject) => {
    const p = spawn(amber, ["--data", data, "serve", "--listen", "127.0.0.1:0"], {
      env: { ...process.env, RUST_LOG: "warn" },
      stdio: ["ignore", "ignore", "pipe"],
    });
    let buf = "";
    p.stderr.on("data", (d) => {
      buf += d;
      const m = buf.match(/on http:\/\/(\S+)/);
      if (m) resolve({ p, base: `http://${m[1]}` });
    });
    p.on("exit", (c) => reject(new Error(`amber exited ${c}: ${buf}`)));
  });
}

async function stop(p) {
  const done = new Promise((r) => p.once("exit", r));
  p.kill("SIGTERM");
  await done;
}

function check(cond, msg) {
  if (!cond) throw new Error(msg);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
let server;
try {
  server = await startServer();
  const a = await browser.newPage();
  const b = await browser.newPage();
  await a.goto(`${server.base}/chat/browser-room?name=ann`);
  await b.goto(`${server.base}/chat/browser-room?name=ben`);
  await a.waitForSelector("#status:has-text('connected')");
  await b.waitForSelector("#status:has-text('connected')");
  await a.fill("#text", "hello from tab A");
  await a.click("button[type=submit]");
  await b.waitForSelector(".msg:has-text('hello from tab A')", { timeout: 5000 });
  const who = await b.textContent(".msg .who");
  check(who === "ann", `sender shown as ${who}`);
  await stop(server.p);

  server = await startServer();
  const c = await browser.newPage();
  await c.goto(`${server.base}/chat/browser-room?name=cid`);
  await c.waitForSelector(".msg:has-text('hello from tab A')", { timeout: 5000 });
  console.log("chat browser test: ok");
} finally {
  await browser.close();
  if (server) await stop(server.p).catch(() => {});
  rmSync(data, { recursive: true, force: true });
}
