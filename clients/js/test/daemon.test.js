// The client against the real daemon in demo mode: snapshot and live events, errors
// as exceptions, origin refusal, reconnection after a restart. Identities and
// signatures: identity.test.js.
import "./node-globals.js";
import { test } from "node:test";
import assert from "node:assert/strict";

import { VitaleBridge, VitaleBridgeError } from "../vitale-bridge.js";
import { ORIGIN, startDaemon, useDemoDaemon, webSocketFrom, nodeWebSocket, waitFor } from "./daemon.js";

const demo = useDemoDaemon(VitaleBridge);
const bridge = demo.bridge;

test("the snapshot and live events keep the reader map", async () => {
  const b = bridge();
  try {
    const hello = await b.connect();
    assert.equal(hello.server, "vitale-bridge");
    assert.equal(hello.protocol, 1);
    assert.ok(hello.capabilities.includes("card.read"));
    assert.deepEqual([...b.readers.keys()].sort(), ["sim:0", "sim:1"]);
    const ins = await waitFor(b, "card.inserted", (e) => e.reader === "sim:0");
    assert.equal(b.readers.get("sim:0").card.atr, ins.data.atr);
    const removed = await waitFor(b, "card.removed", (e) => e.reader === "sim:0");
    assert.ok(removed.seq > ins.seq);
    assert.equal(b.readers.get("sim:0").state, "empty");
    assert.equal(b.readers.get("sim:0").card, null);
  } finally {
    b.close();
  }
});

test("a native client (no Origin) is allowed by default", async () => {
  const b = new VitaleBridge({ url: demo.daemon().url, WebSocket: nodeWebSocket() });
  try {
    const hello = await b.connect();
    assert.equal(hello.server, "vitale-bridge");
    const status = await b.status();
    assert.equal(status.pcsc, "disabled");
    assert.ok(status.clients >= 1);
  } finally {
    b.close();
  }
});

test("errors are exceptions with code, reason and retriable", async () => {
  const b = bridge({ subscribe: false });
  try {
    await b.connect();
    await assert.rejects(b.read("pcsc:no such reader"), (e) => e instanceof VitaleBridgeError && e.code === -32000 && e.reason === "READER_NOT_FOUND" && e.retriable === false);
    await assert.rejects(b.call("no.such.method"), (e) => e.code === -32601 && e.reason === null);
    await assert.rejects(b.sign("sim:1", "c2hvcnQ"), (e) => e.code === -32602);
  } finally {
    b.close();
  }
});

test("a page on an origin that is not allowed cannot connect", async () => {
  const b = new VitaleBridge({ url: demo.daemon().url, WebSocket: webSocketFrom("https://evil.example"), reconnect: false });
  await assert.rejects(b.connect(), (e) => e.code === "DISCONNECTED" && e.retriable === true);
  assert.equal(b.connected, false);
});

test("after the daemon restarts the client reconnects and re-syncs from a fresh snapshot", async () => {
  const first = await startDaemon(["demo", "--listen", "127.0.0.1:0", "--demo-interval-ms", "300", "--allow-origin", ORIGIN]);
  const port = first.port;
  const b = new VitaleBridge({ url: first.url, WebSocket: webSocketFrom(ORIGIN), backoff: { initialMs: 50, maxMs: 500 } });
  let second;
  try {
    await b.connect();
    await waitFor(b, "card.inserted");
    const lost = waitFor(b, "disconnected");
    await first.stop();
    const d = await lost;
    assert.equal(d.willReconnect, true);
    assert.equal(b.connected, false);
    const back = waitFor(b, "connected");
    second = await startDaemon(["demo", "--listen", `127.0.0.1:${port}`, "--demo-interval-ms", "300", "--allow-origin", ORIGIN]);
    await back;
    assert.equal(b.connected, true);
    assert.deepEqual([...b.readers.keys()].sort(), ["sim:0", "sim:1"]);
    // Sample the client's seq when the event is dispatched: later events (the demo
    // reads the card right away) may already have advanced it by the time we resume.
    let seqAtDispatch = null;
    const ev = await waitFor(b, "card.inserted", () => {
      seqAtDispatch = b.seq;
      return true;
    });
    assert.equal(ev.seq, seqAtDispatch, "events apply on top of the new snapshot");
  } finally {
    b.close();
    await second?.stop();
  }
});
