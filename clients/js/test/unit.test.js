// Unit tests of the client's pure parts and of its connection state machine over an
// in-process fake WebSocket.
import "./node-globals.js";
import { test } from "node:test";
import assert from "node:assert/strict";

import { VitaleBridge, VitaleBridgeError, applyEvent, backoffDelay, randomChallenge } from "../vitale-bridge.js";
import { FakeServer, until } from "./fake-websocket.js";

const reader = (id, extra = {}) => ({ id, name: id, kind: "simulated", contactless: false, state: "empty", card: null, ...extra });
const ev = (seq, type, readerId, data) => ({ seq, time: "2026-11-30T14:38:49.123Z", type, reader: readerId, data });

test("backoff grows exponentially, is capped and jittered", () => {
  const mid = () => 0.5;
  assert.deepEqual([0, 1, 2, 3, 10].map((a) => backoffDelay(a, {}, mid)), [250, 500, 1000, 2000, 10000]);
  assert.equal(backoffDelay(0, { initialMs: 100, jitter: 0.5 }, () => 0), 50);
  assert.equal(backoffDelay(0, { initialMs: 100, jitter: 0.5 }, () => 1), 150);
});

test("events update the reader map like the daemon's registry", () => {
  const m = new Map([["sim:0", reader("sim:0")]]);
  applyEvent(m, ev(2, "card.inserted", "sim:0", { atr: "3B", cardType: "vitale2" }));
  assert.equal(m.get("sim:0").state, "present");
  applyEvent(m, ev(3, "card.reading", "sim:0", { step: 1, total: 2 }));
  assert.equal(m.get("sim:0").state, "reading");
  const identity = { source: "vitale-card", beneficiaries: [] };
  applyEvent(m, ev(4, "identity.read", "sim:0", identity));
  assert.equal(m.get("sim:0").state, "ready");
  assert.deepEqual(m.get("sim:0").card.identity, identity);
  applyEvent(m, ev(5, "card.removed", "sim:0", {}));
  assert.deepEqual(m.get("sim:0"), reader("sim:0"));
  applyEvent(m, ev(6, "reader.added", "sim:1", reader("sim:1")));
  applyEvent(m, ev(7, "card.inserted", "sim:1", { atr: "3B", cardType: "apcv" }));
  applyEvent(m, ev(8, "identity.read", "sim:1", { redacted: true }));
  assert.equal(m.get("sim:1").state, "ready");
  assert.equal(m.get("sim:1").card.identity, undefined, "redacted data is not an identity");
  applyEvent(m, ev(9, "identity.error", "sim:1", { reason: "CARD_MUTE", message: "x" }));
  assert.equal(m.get("sim:1").state, "error");
  applyEvent(m, ev(10, "reader.removed", "sim:1", reader("sim:1")));
  assert.deepEqual([...m.keys()], ["sim:0"]);
});

test("errors carry code, reason and retriable", () => {
  const e = VitaleBridgeError.fromRpc({ code: -32000, message: "no card", data: { reason: "NO_CARD", retriable: false } });
  assert.ok(e instanceof Error);
  assert.equal(e.code, -32000);
  assert.equal(e.reason, "NO_CARD");
  assert.equal(e.retriable, false);
  const p = VitaleBridgeError.fromRpc({ code: -32602, message: "bad params" });
  assert.equal(p.reason, null);
  assert.equal(p.retriable, false);
  const busy = new VitaleBridgeError("busy", { code: -32000, reason: "READER_BUSY" });
  assert.equal(busy.retriable, true, "defaults from the reason");
});

test("random challenges are 32 bytes of base64url", () => {
  const c = randomChallenge();
  assert.match(c, /^[A-Za-z0-9_-]{43}$/);
  assert.notEqual(c, randomChallenge());
});

// A scripted daemon: answers hello/subscribe with the given snapshot per connection.
function scripted(snapshots) {
  const server = new FakeServer();
  let conn = 0;
  server.onRequest = (ws, req) => {
    if (req.method === "hello") ws.deliver({ jsonrpc: "2.0", id: req.id, result: { server: "vitale-bridge", version: "0.1.0", protocol: 1, capabilities: [] } });
    else if (req.method === "subscribe") {
      const snap = snapshots[Math.min(conn++, snapshots.length - 1)];
      ws.deliver({ jsonrpc: "2.0", id: req.id, result: snap });
    } else if (req.method === "unsubscribe") ws.deliver({ jsonrpc: "2.0", id: req.id, result: {} });
    else if (req.method === "card.read") ws.deliver({ jsonrpc: "2.0", id: req.id, error: { code: -32000, message: "no card or phone in sim:0", data: { reason: "NO_CARD", retriable: false } } });
  };
  return server;
}

test("snapshot, then events; a lost connection reconnects with backoff and re-syncs", async () => {
  const server = scripted([
    { seq: 5, snapshot: { readers: [reader("sim:0")] } },
    { seq: 9, snapshot: { readers: [reader("sim:0", { state: "present", card: { atr: "3B", cardType: "vitale2" } }), reader("sim:2")] } },
  ]);
  const bridge = new VitaleBridge({ WebSocket: server.WebSocket, backoff: { initialMs: 5, jitter: 0 } });
  const seen = [];
  bridge.on("card.inserted", (e) => seen.push(e.seq));
  const disconnects = [];
  bridge.on("disconnected", (d) => disconnects.push(d));
  const hello = await bridge.connect();
  assert.equal(hello.server, "vitale-bridge");
  assert.equal(bridge.seq, 5);
  const ws = server.sockets[0];
  ws.deliver({ jsonrpc: "2.0", method: "event", params: ev(5, "card.inserted", "sim:0", { atr: "3B", cardType: "vitale2" }) });
  ws.deliver({ jsonrpc: "2.0", method: "event", params: ev(6, "card.inserted", "sim:0", { atr: "3B", cardType: "vitale2" }) });
  assert.deepEqual(seen, [6], "seq 5 is already in the snapshot");
  assert.equal(bridge.readers.get("sim:0").state, "present");

  const reconnected = new Promise((r) => bridge.addEventListener("connected", r, { once: true }));
  ws.drop();
  assert.equal(bridge.connected, false);
  await assert.rejects(bridge.read("sim:0"), (e) => e.code === "NOT_CONNECTED" && e.retriable === true);
  await reconnected;
  assert.equal(disconnects.length, 1);
  assert.equal(disconnects[0].willReconnect, true);
  assert.equal(disconnects[0].delayMs, 5);
  assert.equal(server.sockets.length, 2);
  assert.deepEqual(server.sockets[1].sent.map((m) => m.method), ["hello", "subscribe"]);
  assert.equal(bridge.seq, 9);
  assert.deepEqual([...bridge.readers.keys()], ["sim:0", "sim:2"], "map replaced by the fresh snapshot");
  bridge.close();
});

test("a gap in seq triggers a fresh snapshot", async () => {
  const server = scripted([
    { seq: 1, snapshot: { readers: [reader("sim:0")] } },
    { seq: 7, snapshot: { readers: [reader("sim:0", { state: "ready" })] } },
  ]);
  const bridge = new VitaleBridge({ WebSocket: server.WebSocket });
  await bridge.connect();
  const resyncs = [];
  bridge.on("resync", (d) => resyncs.push(d));
  server.sockets[0].deliver({ jsonrpc: "2.0", method: "event", params: ev(4, "card.removed", "sim:0", {}) });
  await until(() => bridge.seq === 7);
  assert.deepEqual(resyncs, [{ expected: 2, got: 4 }]);
  assert.equal(bridge.readers.get("sim:0").state, "ready");
  assert.deepEqual(server.sockets[0].sent.map((m) => m.method), ["hello", "subscribe", "unsubscribe", "subscribe"]);
  bridge.close();
});

test("application errors reject with VitaleBridgeError", async () => {
  const server = scripted([{ seq: 0, snapshot: { readers: [] } }]);
  const bridge = new VitaleBridge({ WebSocket: server.WebSocket });
  await bridge.connect();
  await assert.rejects(bridge.read("sim:0"), (e) => e instanceof VitaleBridgeError && e.reason === "NO_CARD" && e.retriable === false && e.code === -32000);
  bridge.close();
});

test("without reconnect, connect() rejects when the daemon refuses", async () => {
  const server = new FakeServer();
  server.refuse = true;
  const bridge = new VitaleBridge({ WebSocket: server.WebSocket, reconnect: false });
  await assert.rejects(bridge.connect(), (e) => e.code === "DISCONNECTED" && e.reason === "SERVICE_UNAVAILABLE");
});

test("sign encodes byte challenges as base64url", async () => {
  const server = scripted([{ seq: 0, snapshot: { readers: [] } }]);
  const bridge = new VitaleBridge({ WebSocket: server.WebSocket, requestTimeoutMs: 50 });
  await bridge.connect();
  const bytes = new Uint8Array(32).fill(0xfb);
  await assert.rejects(bridge.sign("sim:1", bytes), (e) => e.code === "TIMEOUT");
  const sent = server.sockets[0].sent.at(-1);
  assert.equal(sent.method, "card.sign");
  assert.equal(sent.params.challenge, Buffer.from(bytes).toString("base64url"));
  assert.match(sent.params.challenge, /^[A-Za-z0-9_-]{43}$/);
  bridge.close();
});
