// Runs the real vitale-bridge binary for the client's integration tests: waits for
// its ready line (never a fixed sleep) and stops it with SIGTERM.
import { after, before } from "node:test";
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";

/** The daemon binary: $VITALE_BRIDGE_BIN or the workspace's debug build. */
export const BIN = process.env.VITALE_BRIDGE_BIN ?? fileURLToPath(new URL("../../../target/debug/vitale-bridge", import.meta.url));

/**
 * The WebSocket constructor the tests use: the `ws` package (a devDependency, installed
 * by `npm ci` or scripts/setup), so the suite runs the same on every Node >= 18, with or
 * without a global WebSocket (Debian 12's Node 18 has none).
 */
export function nodeWebSocket() {
  return WebSocket;
}

/** A WebSocket constructor that sends `Origin: origin`, like a browser page on that origin. */
export function webSocketFrom(origin) {
  return class extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols ?? [], { origin });
    }
  };
}

/** Starts `vitale-bridge ...args` and resolves once it listens: {port, url, stop(), log()}. */
export function startDaemon(args, { timeoutMs = 20000 } = {}) {
  if (!existsSync(BIN)) {
    throw new Error(`vitale-bridge binary not found at ${BIN}: run \`cargo build\` first or set VITALE_BRIDGE_BIN`);
  }
  const home = mkdtempSync(join(tmpdir(), "vb-js-"));
  const child = spawn(BIN, args, {
    stdio: ["ignore", "pipe", "pipe"],
    // Keep the user's and machine's config files out of tests.
    env: { ...process.env, HOME: home, XDG_CONFIG_HOME: home, VITALE_BRIDGE_SYSTEM_CONFIG: join(home, "none.toml") },
  });
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr += d;
  });
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`no ready line from vitale-bridge ${args.join(" ")}; log:\n${stderr}`));
    }, timeoutMs);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`vitale-bridge exited with ${code} before its ready line; log:\n${stderr}`));
    });
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/^listening on ws:\/\/127\.0\.0\.1:(\d+)\/v1$/m);
      if (!m) return;
      clearTimeout(timer);
      child.removeAllListeners("exit");
      const port = Number(m[1]);
      const exited = new Promise((r) => child.on("exit", (code, signal) => r({ code, signal })));
      resolve({
        port,
        url: `ws://127.0.0.1:${port}/v1`,
        log: () => stderr,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
          const status = await exited;
          rmSync(home, { recursive: true, force: true });
          return status;
        },
      });
    });
  });
}

/** Resolves with the detail of the first `type` event satisfying `pred`, or rejects after `ms`. */
export function waitFor(bridge, type, pred = () => true, ms = 15000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no ${type} event within ${ms} ms`));
    }, ms);
    const off = bridge.on(type, (detail) => {
      if (!pred(detail)) return;
      clearTimeout(timer);
      off();
      resolve(detail);
    });
  });
}

/** The test origin the shared demo daemon allows. */
export const ORIGIN = "https://practice.example";

/**
 * Starts one demo daemon (allowing {@link ORIGIN}) before the file's tests and stops
 * it after them. Returns `daemon()` for the running daemon and `bridge(extra)` for a
 * client connecting from ORIGIN.
 */
export function useDemoDaemon(VitaleBridge) {
  let daemon;
  before(async () => {
    daemon = await startDaemon(["demo", "--listen", "127.0.0.1:0", "--demo-interval-ms", "500", "--allow-origin", ORIGIN]);
  });
  after(async () => {
    await daemon?.stop();
  });
  return {
    daemon: () => daemon,
    bridge: (extra = {}) =>
      new VitaleBridge({ url: daemon.url, WebSocket: webSocketFrom(ORIGIN), client: "node-test", ...extra }),
  };
}
