// The client's Local Network Access state: what the Permissions API says before each
// connection attempt, and how a failed connection is reported with it. A fake
// `permissions` object stands in for the browser's here; the real Chromium answers
// are checked by the browser tests (tests/browser_lna_chromium.rs).
import { test } from "node:test";
import assert from "node:assert/strict";

import { LOOPBACK_PERMISSION_NAMES, VitaleBridge, queryLoopbackPermission } from "../vitale-bridge.js";
import { FakeServer, until } from "./fake-websocket.js";

/** A Permissions API knowing `known` (name → state); other names throw like browsers do. */
function fakePermissions(known) {
  const statuses = new Map();
  return {
    asked: [],
    query({ name }) {
      this.asked.push(name);
      if (!(name in known)) return Promise.reject(new TypeError(`'${name}' is not a valid enum value of type PermissionName.`));
      if (!statuses.has(name)) statuses.set(name, { state: known[name], onchange: null });
      return Promise.resolve(statuses.get(name));
    },
    /** The user or a policy changes the state. */
    set(name, state) {
      const s = statuses.get(name);
      s.state = state;
      s.onchange?.({});
    },
  };
}

test("browser states map to allowed, needs-permission and blocked-by-browser", async () => {
  for (const [browser, want] of [["granted", "allowed"], ["prompt", "needs-permission"], ["denied", "blocked-by-browser"]]) {
    const p = fakePermissions({ "loopback-network": browser });
    const r = await queryLoopbackPermission(p);
    assert.equal(r.state, want);
    assert.equal(r.name, "loopback-network");
  }
});

test("older Chromium names are tried in turn; unknown names or no API give unknown", async () => {
  assert.deepEqual(LOOPBACK_PERMISSION_NAMES, ["loopback-network", "local-network-access"]);
  const older = fakePermissions({ "local-network-access": "prompt" });
  assert.equal((await queryLoopbackPermission(older)).state, "needs-permission");
  assert.deepEqual(older.asked, ["loopback-network", "local-network-access"]);
  assert.equal((await queryLoopbackPermission(fakePermissions({}))).state, "unknown");
  assert.equal((await queryLoopbackPermission(undefined)).state, "unknown");
  assert.equal((await queryLoopbackPermission(null)).state, "unknown");
  // Node has no navigator.permissions: the default is unknown.
  assert.equal((await queryLoopbackPermission()).state, "unknown");
});

test("a connection refused while the permission is prompt is reported as needs-permission", async () => {
  const server = new FakeServer();
  server.refuse = true;
  const permissions = fakePermissions({ "loopback-network": "prompt" });
  const bridge = new VitaleBridge({ url: "ws://fake/v1", WebSocket: server.WebSocket, reconnect: false, permissions });
  const seen = [];
  bridge.on("disconnected", (d) => seen.push(d));
  const err = await bridge.connect().then(
    () => null,
    (e) => e,
  );
  assert.ok(err, "connect() rejected");
  assert.equal(err.permission, "needs-permission");
  assert.equal(err.code, "DISCONNECTED");
  assert.equal(err.retriable, true, "the user can still allow it");
  assert.match(err.message, /Local Network Access permission was not granted/);
  assert.equal(bridge.permission, "needs-permission");
  assert.equal(seen.length, 1);
  assert.equal(seen[0].permission, "needs-permission");
  assert.deepEqual(permissions.asked, ["loopback-network"], "asked before the socket");
});

test("denied is blocked-by-browser and not retriable", async () => {
  const server = new FakeServer();
  server.refuse = true;
  const bridge = new VitaleBridge({
    url: "ws://fake/v1",
    WebSocket: server.WebSocket,
    reconnect: false,
    permissions: fakePermissions({ "loopback-network": "denied" }),
  });
  const err = await bridge.connect().catch((e) => e);
  assert.equal(err.permission, "blocked-by-browser");
  assert.equal(err.retriable, false);
  assert.match(err.message, /not served over https/);
});

test("a refusal with the permission granted or unknown does not blame the browser", async () => {
  for (const [known, want] of [[{ "loopback-network": "granted" }, "allowed"], [{}, "unknown"]]) {
    const server = new FakeServer();
    server.refuse = true;
    const bridge = new VitaleBridge({ url: "ws://fake/v1", WebSocket: server.WebSocket, reconnect: false, permissions: fakePermissions(known) });
    const err = await bridge.connect().catch((e) => e);
    assert.equal(err.permission, want);
    assert.doesNotMatch(err.message, /Local Network Access|https/);
    assert.equal(err.retriable, true);
  }
});

test("granting the permission while waiting to reconnect retries at once", async () => {
  const server = new FakeServer();
  server.refuse = true;
  server.onRequest = (socket, msg) => {
    const results = { hello: { server: "vitale-bridge", version: "0.1.0", protocol: 1, capabilities: [] }, subscribe: { seq: 0, snapshot: { readers: [] } } };
    queueMicrotask(() => socket.deliver({ jsonrpc: "2.0", id: msg.id, result: results[msg.method] ?? {} }));
  };
  const permissions = fakePermissions({ "loopback-network": "prompt" });
  const states = [];
  const bridge = new VitaleBridge({
    url: "ws://fake/v1",
    WebSocket: server.WebSocket,
    permissions,
    // A long backoff: only the permission change can make it reconnect in time.
    backoff: { initialMs: 60000, jitter: 0 },
  });
  bridge.on("permission", (d) => states.push(d.state));
  const connected = bridge.connect();
  await until(() => server.sockets.length === 1 && server.sockets[0].readyState === 3);
  server.refuse = false;
  permissions.set("loopback-network", "granted");
  await connected;
  assert.equal(bridge.permission, "allowed");
  assert.deepEqual(states, ["needs-permission", "allowed"]);
  assert.equal(server.sockets.length, 2);
  bridge.close();
});

test("a socket that opens means allowed, whatever the Permissions API said", async () => {
  const server = new FakeServer();
  server.onRequest = (socket, msg) => {
    const results = { hello: { server: "vitale-bridge", version: "0.1.0", protocol: 1, capabilities: [] }, subscribe: { seq: 0, snapshot: { readers: [] } } };
    queueMicrotask(() => socket.deliver({ jsonrpc: "2.0", id: msg.id, result: results[msg.method] ?? {} }));
  };
  const states = [];
  const bridge = new VitaleBridge({ url: "ws://fake/v1", WebSocket: server.WebSocket, reconnect: false, permissions: fakePermissions({ "loopback-network": "prompt" }) });
  bridge.on("permission", (d) => states.push(d.state));
  await bridge.connect();
  assert.deepEqual(states, ["needs-permission", "allowed"]);
  assert.equal(bridge.permission, "allowed");
  bridge.close();
});
