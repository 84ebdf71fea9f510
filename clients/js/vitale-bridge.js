// vitale-bridge JavaScript client: a dependency-free ES module for browsers and Node.
//
// Talks JSON-RPC 2.0 to the local vitale-bridge daemon (ws://127.0.0.1:24880/v1),
// reconnects with exponential backoff, re-synchronises its reader map from a fresh
// `subscribe` snapshot after every reconnect, and turns protocol errors into
// `VitaleBridgeError` exceptions. Protocol reference: docs/protocol.md.

/** Client version (kept equal to the daemon's crate version). */
export const VERSION = "0.1.0";

/** Where the daemon listens by default. */
export const DEFAULT_URL = "ws://127.0.0.1:24880/v1";

/** Every event type of protocol v1. */
export const EVENT_TYPES = Object.freeze([
  "reader.added",
  "reader.removed",
  "card.inserted",
  "card.reading",
  "identity.read",
  "identity.error",
  "card.removed",
  "signature.completed",
  "service.changed",
]);

/** Reasons for which retrying later can succeed (mirrors the daemon's error catalogue). */
const RETRIABLE = new Set([
  "CARD_REMOVED",
  "CARD_MUTE",
  "READER_BUSY",
  "SERVICE_UNAVAILABLE",
  "TIMEOUT",
  "RATE_LIMITED",
  "USER_REFUSED",
]);

/** An error from the daemon (JSON-RPC error) or from the connection. */
export class VitaleBridgeError extends Error {
  /**
   * @param {string} message human explanation (never contains identity data)
   * @param {{code: number|string, reason?: string|null, retriable?: boolean, data?: unknown}} info
   */
  constructor(message, info) {
    super(message);
    this.name = "VitaleBridgeError";
    /** JSON-RPC code (-32000 for application errors) or a client-side code string. */
    this.code = info.code;
    /** Stable reason such as `NO_CARD`, or null for protocol-level errors. */
    this.reason = info.reason ?? null;
    /** Whether the same request may succeed later. */
    this.retriable = info.retriable ?? (info.reason ? RETRIABLE.has(info.reason) : false);
    /** The error's raw `data`, if any. */
    this.data = info.data;
  }

  /** Builds an error from a JSON-RPC error object. */
  static fromRpc(error) {
    const data = error && typeof error === "object" ? error.data : undefined;
    const reason = data && typeof data.reason === "string" ? data.reason : null;
    const retriable = data && typeof data.retriable === "boolean" ? data.retriable : undefined;
    return new VitaleBridgeError(String(error?.message ?? "error"), {
      code: typeof error?.code === "number" ? error.code : -32603,
      reason,
      retriable,
      data,
    });
  }
}

/** The event objects this client dispatches; `detail` carries the payload. */
export class BridgeEvent extends Event {
  constructor(type, detail) {
    super(type);
    /** The protocol event (for protocol types) or a small status object. */
    this.detail = detail;
  }
}

/**
 * Delay before reconnect attempt `attempt` (0-based): `initialMs * factor^attempt`,
 * capped at `maxMs`, spread by ±`jitter` so many tabs do not reconnect in lockstep.
 */
export function backoffDelay(attempt, { initialMs = 250, maxMs = 10000, factor = 2, jitter = 0.2 } = {}, random = Math.random) {
  const base = Math.min(maxMs, initialMs * Math.pow(factor, Math.max(0, attempt)));
  const spread = base * jitter * (2 * random() - 1);
  return Math.max(0, Math.round(base + spread));
}

/**
 * Applies one protocol event to a reader map (id → Reader) in place, the way the
 * daemon's own registry changes. Returns true if the map changed.
 */
export function applyEvent(readers, event) {
  const id = event.reader;
  const data = event.data ?? {};
  const reader = id != null ? readers.get(id) : undefined;
  switch (event.type) {
    case "reader.added":
      readers.set(data.id ?? id, { ...data, card: data.card ?? null });
      return true;
    case "reader.removed":
      return readers.delete(data.id ?? id);
    case "card.inserted":
      if (!reader) return false;
      readers.set(id, { ...reader, state: "present", card: { atr: data.atr, cardType: data.cardType } });
      return true;
    case "card.reading":
      if (!reader) return false;
      readers.set(id, { ...reader, state: "reading" });
      return true;
    case "identity.read": {
      if (!reader) return false;
      const card = reader.card ? { ...reader.card } : null;
      // Redacted views carry `{redacted: true}`: the state changes, no identity is kept.
      if (card && !data.redacted) card.identity = data;
      readers.set(id, { ...reader, state: "ready", card });
      return true;
    }
    case "identity.error":
      if (!reader) return false;
      readers.set(id, { ...reader, state: "error" });
      return true;
    case "card.removed":
      if (!reader) return false;
      readers.set(id, { ...reader, state: "empty", card: null });
      return true;
    default:
      return false;
  }
}

function base64url(bytes) {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function toBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return null;
}

/** A fresh random challenge (default 32 bytes) as base64url, for `sign`. */
export function randomChallenge(length = 32) {
  const bytes = new Uint8Array(length);
  if (typeof globalThis.crypto?.getRandomValues !== "function") {
    throw new TypeError("no Web Crypto: on Node 18 set globalThis.crypto = (await import('node:crypto')).webcrypto");
  }
  globalThis.crypto.getRandomValues(bytes);
  return base64url(bytes);
}

const OPEN = 1;

/**
 * Permission names under which browsers gate a public page's connection to
 * 127.0.0.1, newest first: Chromium 145+ `loopback-network` (what a connection to
 * the daemon needs), Chromium 142–144 `local-network-access`.
 */
export const LOOPBACK_PERMISSION_NAMES = Object.freeze(["loopback-network", "local-network-access"]);

const PERMISSION_HINTS = {
  "needs-permission": "the browser's Local Network Access permission was not granted (the user must allow it, or an administrator pre-approve the site)",
  "blocked-by-browser": "the browser blocks this page from the local network (permission denied, or the page is not served over https)",
};

const PERMISSION_STATES = { granted: "allowed", prompt: "needs-permission", denied: "blocked-by-browser" };

/**
 * What the browser says about this page reaching the daemon on 127.0.0.1 (its Local
 * Network Access permission), without connecting:
 * - `allowed`: granted (by the user or an admin policy), or the page is itself local;
 * - `needs-permission`: the browser will ask the user (or, headless/embedded, block);
 * - `blocked-by-browser`: denied: the user refused, or the page is not a secure
 *   context (plain `http://`), where no permission can ever be granted;
 * - `unknown`: no Permissions API, or it knows none of the names (Firefox, Safari,
 *   Node, Chromium before 142): a failure then is not explained by the browser.
 * @param {Permissions} [permissions] defaults to `navigator.permissions`
 * @returns {Promise<{state: "allowed"|"needs-permission"|"blocked-by-browser"|"unknown", name: string|null, status: PermissionStatus|null}>}
 */
export async function queryLoopbackPermission(permissions = globalThis.navigator?.permissions) {
  if (!permissions || typeof permissions.query !== "function") return { state: "unknown", name: null, status: null };
  for (const name of LOOPBACK_PERMISSION_NAMES) {
    let status;
    try {
      status = await permissions.query({ name });
    } catch {
      continue; // TypeError: this browser does not know the name
    }
    const state = PERMISSION_STATES[status?.state];
    if (state) return { state, name, status };
  }
  return { state: "unknown", name: null, status: null };
}

/**
 * A connection to the daemon. Dispatches `BridgeEvent`s:
 * - every protocol event type (`identity.read`, `card.inserted`, …) with the event as detail,
 * - `event` for every protocol event,
 * - `readers` when the reader map changed (detail: the map),
 * - `connected` after hello + subscribe (detail: the hello result),
 * - `disconnected` (detail: {code, reason, willReconnect, delayMs, permission}),
 * - `permission` when the browser's Local Network Access state changed (detail: {state}),
 * - `resync` when a gap in `seq` forced a fresh snapshot.
 */
export class VitaleBridge extends EventTarget {
  #url;
  #WebSocket;
  #opts;
  #ws = null;
  #nextId = 1;
  #pending = new Map();
  #readers = new Map();
  #seq = null;
  #server = null;
  #attempt = 0;
  #timer = null;
  #closed = false;
  #ready = false;
  #buffered = null;
  #waiters = [];
  #permission = "unknown";
  #permissionStatus = null;
  #permissions;
  #opening = false;

  /**
   * @param {object} [options]
   * @param {string} [options.url] daemon URL (default ws://127.0.0.1:24880/v1)
   * @param {typeof WebSocket} [options.WebSocket] constructor to use (Node < 22: pass one)
   * @param {string} [options.client] name sent in `hello`
   * @param {boolean} [options.subscribe] subscribe to events (default true)
   * @param {boolean} [options.reconnect] reconnect after a lost connection (default true)
   * @param {object} [options.backoff] {initialMs, maxMs, factor, jitter}
   * @param {number} [options.requestTimeoutMs] per-request limit (default 75000; signatures wait for the holder)
   */
  constructor(options = {}) {
    super();
    this.#url = options.url ?? DEFAULT_URL;
    this.#WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.#permissions = "permissions" in options ? options.permissions : globalThis.navigator?.permissions;
    if (typeof this.#WebSocket !== "function") {
      throw new TypeError("no WebSocket implementation: pass options.WebSocket (e.g. from the `ws` package, or run Node >= 22)");
    }
    this.#opts = {
      client: options.client ?? `vitale-bridge-js/${VERSION}`,
      subscribe: options.subscribe ?? true,
      reconnect: options.reconnect ?? true,
      backoff: { ...(options.backoff ?? {}) },
      requestTimeoutMs: options.requestTimeoutMs ?? 75000,
    };
  }

  /** The readers (id → Reader), kept from the snapshot and events. Read-only view. */
  get readers() {
    return new Map(this.#readers);
  }

  /** The `hello` result of the current connection, or null. */
  get server() {
    return this.#server;
  }

  /** True once hello (and subscribe) succeeded on the current connection. */
  get connected() {
    return this.#ready;
  }

  /**
   * The browser's Local Network Access state for reaching the daemon, as last
   * queried before connecting: `allowed`, `needs-permission`, `blocked-by-browser`
   * or `unknown` (see {@link queryLoopbackPermission}).
   */
  get permission() {
    return this.#permission;
  }

  /** The last event `seq` applied to the reader map. */
  get seq() {
    return this.#seq;
  }

  /**
   * Opens the connection (if not yet) and resolves with the `hello` result once
   * connected and subscribed. With `reconnect`, keeps trying until it succeeds or
   * `close()` is called; without, rejects on the first failure.
   */
  connect() {
    this.#closed = false;
    if (this.#ready) return Promise.resolve(this.#server);
    const p = new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
    if (!this.#ws && !this.#timer && !this.#opening) this.#open();
    return p;
  }

  /** Closes the connection for good (no reconnect); pending requests reject. */
  close() {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = null;
    const ws = this.#ws;
    this.#ws = null;
    this.#teardown(new VitaleBridgeError("client closed", { code: "CLOSED", reason: null, retriable: false }));
    if (ws) {
      try {
        ws.close(1000);
      } catch {
        /* already closing */
      }
    }
    const waiters = this.#waiters.splice(0);
    for (const w of waiters) w.reject(new VitaleBridgeError("client closed", { code: "CLOSED", retriable: false }));
  }

  /** Calls `fn(detail)` for each event of `type`; returns a function that unregisters it. */
  on(type, fn) {
    const listener = (ev) => fn(ev.detail);
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
  }

  /** Sends a raw JSON-RPC request; resolves with its result or rejects with VitaleBridgeError. */
  call(method, params) {
    const ws = this.#ws;
    if (!ws || ws.readyState !== OPEN) {
      return Promise.reject(
        new VitaleBridgeError("not connected to vitale-bridge", { code: "NOT_CONNECTED", reason: "SERVICE_UNAVAILABLE", retriable: true }),
      );
    }
    const id = this.#nextId++;
    const msg = { jsonrpc: "2.0", id, method };
    if (params !== undefined) msg.params = params;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new VitaleBridgeError(`${method}: no answer within ${this.#opts.requestTimeoutMs} ms`, { code: "TIMEOUT", reason: "TIMEOUT", retriable: true }));
      }, this.#opts.requestTimeoutMs);
      this.#pending.set(id, { resolve, reject, timer });
      try {
        ws.send(JSON.stringify(msg));
      } catch (e) {
        clearTimeout(timer);
        this.#pending.delete(id);
        reject(new VitaleBridgeError(`send failed: ${e?.message ?? e}`, { code: "DISCONNECTED", reason: "SERVICE_UNAVAILABLE", retriable: true }));
      }
    });
  }

  /** `hello`: server name, version, protocol and capabilities. */
  hello() {
    return this.call("hello", { client: this.#opts.client, protocol: 1 });
  }

  /** `status`: service states, clients, uptime. */
  status() {
    return this.call("status");
  }

  /** `readers.list`: the readers now. */
  async listReaders() {
    const r = await this.call("readers.list");
    return r.readers;
  }

  /** `card.read`: the identity of the card or phone in `reader` (cached unless `fresh`). */
  read(reader, { fresh = false } = {}) {
    const params = { reader };
    if (fresh) params.fresh = true;
    return this.call("card.read", params);
  }

  /**
   * `card.sign`: the phone in `reader` signs `challenge` bound to this page's origin.
   * `challenge` is base64url text or bytes (Uint8Array/ArrayBuffer), 32–512 bytes.
   */
  sign(reader, challenge) {
    const bytes = toBytes(challenge);
    const text = bytes ? base64url(bytes) : String(challenge);
    return this.call("card.sign", { reader, challenge: text });
  }

  // The permission is asked before every attempt: a user may have answered the
  // prompt, or an admin pushed a policy, since the last one.
  async #open() {
    this.#timer = null;
    this.#opening = true;
    try {
      await this.#queryPermission();
    } finally {
      this.#opening = false;
    }
    if (this.#closed && this.#waiters.length === 0) return;
    let ws;
    try {
      ws = new this.#WebSocket(this.#url);
    } catch (e) {
      this.#lost(1006, String(e?.message ?? e));
      return;
    }
    this.#ws = ws;
    ws.onopen = () => this.#onOpen(ws);
    ws.onmessage = (ev) => this.#onMessage(ws, ev.data);
    // Browsers report handshake refusals (403: origin not allowed) only as error + close
    // 1006; some implementations (Node 20's undici) fire the error and never a close.
    ws.onerror = () => {
      if (this.#ws === ws && ws.readyState !== OPEN) {
        this.#lost(1006, "connection failed");
        try {
          ws.close();
        } catch {
          /* never opened */
        }
      }
    };
    ws.onclose = (ev) => {
      if (this.#ws === ws) this.#lost(ev?.code ?? 1006, ev?.reason ?? "");
    };
  }

  async #queryPermission() {
    let result;
    try {
      result = await queryLoopbackPermission(this.#permissions);
    } catch {
      result = { state: "unknown", name: null, status: null };
    }
    this.#setPermission(result.state);
    if (result.status && result.status !== this.#permissionStatus) {
      this.#permissionStatus = result.status;
      // The user answering the prompt (or a policy arriving) shows up here first.
      result.status.onchange = () => {
        const state = PERMISSION_STATES[result.status.state] ?? "unknown";
        this.#setPermission(state);
        if (state === "allowed" && this.#timer && !this.#closed) {
          clearTimeout(this.#timer);
          this.#open();
        }
      };
    }
  }

  #setPermission(state) {
    if (state === this.#permission) return;
    this.#permission = state;
    this.dispatchEvent(new BridgeEvent("permission", { state }));
  }

  async #onOpen(ws) {
    // The socket opened, so the browser let this page reach the daemon, whatever its
    // Permissions API said (Firefox 153 answers "prompt" and does not gate WebSockets).
    this.#setPermission("allowed");
    try {
      const hello = await this.hello();
      if (this.#ws !== ws) return;
      this.#server = hello;
      if (this.#opts.subscribe) await this.#subscribe();
      if (this.#ws !== ws) return;
      this.#attempt = 0;
      this.#ready = true;
      this.dispatchEvent(new BridgeEvent("connected", hello));
      for (const w of this.#waiters.splice(0)) w.resolve(hello);
    } catch (e) {
      if (this.#ws !== ws) return;
      // A daemon that refuses hello/subscribe is not usable: drop and retry later.
      this.#ws = null;
      try {
        ws.close(1000);
      } catch {
        /* ignore */
      }
      this.#lost(1006, e?.message ?? "hello failed");
    }
  }

  async #subscribe() {
    this.#buffered = [];
    const r = await this.call("subscribe", {});
    this.#readers = new Map((r.snapshot?.readers ?? []).map((rd) => [rd.id, rd]));
    this.#seq = r.seq;
    const early = this.#buffered;
    this.#buffered = null;
    this.dispatchEvent(new BridgeEvent("readers", this.readers));
    for (const ev of early) this.#onEvent(ev);
  }

  #onMessage(ws, data) {
    if (this.#ws !== ws) return;
    let msg;
    try {
      msg = JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data));
    } catch {
      return;
    }
    if (msg && msg.method === "event" && msg.params) {
      if (this.#buffered) this.#buffered.push(msg.params);
      else this.#onEvent(msg.params);
      return;
    }
    const pending = msg && this.#pending.get(msg.id);
    if (!pending) return;
    this.#pending.delete(msg.id);
    clearTimeout(pending.timer);
    if (msg.error) pending.reject(VitaleBridgeError.fromRpc(msg.error));
    else pending.resolve(msg.result);
  }

  #onEvent(ev) {
    if (typeof ev.seq === "number" && this.#seq !== null) {
      if (ev.seq <= this.#seq) return; // already in the snapshot
      if (ev.seq !== this.#seq + 1) {
        this.#resync(ev.seq);
        return;
      }
    }
    if (typeof ev.seq === "number") this.#seq = ev.seq;
    const changed = applyEvent(this.#readers, ev);
    this.dispatchEvent(new BridgeEvent(ev.type, ev));
    this.dispatchEvent(new BridgeEvent("event", ev));
    if (changed) this.dispatchEvent(new BridgeEvent("readers", this.readers));
  }

  // A gap in `seq` means the map may be wrong: take a fresh snapshot instead of
  // guessing, buffering events until it arrives.
  #resync(got) {
    const expected = this.#seq + 1;
    const ws = this.#ws;
    this.#buffered = [];
    this.dispatchEvent(new BridgeEvent("resync", { expected, got }));
    this.call("unsubscribe")
      .catch(() => {})
      .then(() => this.#subscribe())
      .catch(() => {
        // Could not re-subscribe: reconnecting starts from a fresh snapshot anyway.
        if (ws && this.#ws === ws) ws.close(1000);
      });
  }

  #teardown(error) {
    this.#ready = false;
    this.#buffered = null;
    for (const [id, p] of this.#pending) {
      clearTimeout(p.timer);
      p.reject(error);
      this.#pending.delete(id);
    }
  }

  #lost(code, reason) {
    this.#ws = null;
    this.#teardown(new VitaleBridgeError(`connection to vitale-bridge lost (${code})`, { code: "DISCONNECTED", reason: "SERVICE_UNAVAILABLE", retriable: true }));
    const willReconnect = this.#opts.reconnect && !this.#closed;
    const delayMs = willReconnect ? backoffDelay(this.#attempt++, this.#opts.backoff) : null;
    const permission = this.#permission;
    this.dispatchEvent(new BridgeEvent("disconnected", { code, reason, willReconnect, delayMs, permission }));
    if (willReconnect) {
      this.#timer = setTimeout(() => this.#open(), delayMs);
    } else {
      const why = PERMISSION_HINTS[permission];
      const err = new VitaleBridgeError(`cannot connect to vitale-bridge at ${this.#url} (${code})${why ? `: ${why}` : ""}`, {
        code: "DISCONNECTED",
        reason: "SERVICE_UNAVAILABLE",
        retriable: permission !== "blocked-by-browser",
      });
      err.permission = permission;
      for (const w of this.#waiters.splice(0)) w.reject(err);
    }
  }
}

export default VitaleBridge;
