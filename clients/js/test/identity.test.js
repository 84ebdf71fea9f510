// The client against the real daemon in demo mode, with the virtual Carte Vitale and
// phone: identity.read events, the cached read(), and origin-bound signatures
// verified here with WebCrypto.
import "./node-globals.js";
import { test } from "node:test";
import assert from "node:assert/strict";

import { VitaleBridge, randomChallenge } from "../vitale-bridge.js";
import { ORIGIN, useDemoDaemon, nodeWebSocket, waitFor } from "./daemon.js";

const demo = useDemoDaemon(VitaleBridge);
const bridge = demo.bridge;

test("snapshot and events keep the reader map; identity.read arrives and read() returns it", async () => {
  const b = bridge();
  try {
    const hello = await b.connect();
    assert.equal(hello.server, "vitale-bridge");
    assert.equal(hello.protocol, 1);
    assert.ok(hello.capabilities.includes("card.read"));
    assert.deepEqual([...b.readers.keys()].sort(), ["sim:0", "sim:1"]);
    const ev = await waitFor(b, "identity.read", (e) => e.reader === "sim:0");
    assert.equal(ev.data.source, "vitale-card");
    assert.ok(ev.data.beneficiaries.length >= 1);
    assert.equal(b.readers.get("sim:0").state, "ready");
    assert.deepEqual(b.readers.get("sim:0").card.identity, ev.data);
    const identity = await b.read("sim:0");
    assert.deepEqual(identity, ev.data, "cached identity of the present card");
    const removed = await waitFor(b, "card.removed", (e) => e.reader === "sim:0");
    assert.ok(removed.seq > ev.seq);
    assert.equal(b.readers.get("sim:0").state, "empty");
    assert.equal(b.readers.get("sim:0").card, null);
  } finally {
    b.close();
  }
});


test("a phone signs a challenge bound to this origin; the signature verifies", async () => {
  const b = bridge();
  try {
    await b.connect();
    await waitFor(b, "identity.read", (e) => e.reader === "sim:1");
    const challenge = randomChallenge();
    const sig = await b.sign("sim:1", challenge);
    assert.equal(sig.alg, "ES256");
    assert.equal(sig.origin, ORIGIN);
    assert.equal(sig.challenge, challenge);
    assert.equal(sig.verified, true);
    const subtle = globalThis.crypto.subtle;
    const sha = async (bytes) => new Uint8Array(await subtle.digest("SHA-256", bytes));
    const message = new Uint8Array(64);
    message.set(await sha(new TextEncoder().encode(ORIGIN)), 0);
    message.set(await sha(Buffer.from(challenge, "base64url")), 32);
    const key = await subtle.importKey("raw", Buffer.from(sig.publicKey, "base64url"), { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
    const ok = await subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, Buffer.from(sig.signature, "base64url"), message);
    assert.ok(ok, "ES256 over SHA-256(origin) || SHA-256(challenge)");
    const other = new Uint8Array(message);
    other.set(await sha(new TextEncoder().encode("https://evil.example")), 0);
    assert.equal(await subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, Buffer.from(sig.signature, "base64url"), other), false);
  } finally {
    b.close();
  }
});


test("a native client signs as native:", async () => {
  const b = new VitaleBridge({ url: demo.daemon().url, WebSocket: nodeWebSocket() });
  try {
    await b.connect();
    await waitFor(b, "identity.read", (e) => e.reader === "sim:1");
    const sig = await b.sign("sim:1", new Uint8Array(32).fill(7));
    assert.equal(sig.origin, "native:");
  } finally {
    b.close();
  }
});

