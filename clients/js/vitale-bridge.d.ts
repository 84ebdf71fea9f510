// Type declarations for vitale-bridge.js (protocol v1, see docs/protocol.md and
// schema/protocol.schema.json in the vitale-bridge repository).

export declare const VERSION: string;
export declare const DEFAULT_URL: string;
export declare const EVENT_TYPES: readonly EventType[];

export type CardType = "vitale2" | "vitale1" | "cps" | "apcv" | "unknown";
export type ReaderState = "empty" | "present" | "reading" | "ready" | "error";
export type Reason =
  | "READER_NOT_FOUND"
  | "NO_CARD"
  | "CARD_REMOVED"
  | "CARD_UNSUPPORTED"
  | "CARD_MUTE"
  | "READER_BUSY"
  | "SERVICE_UNAVAILABLE"
  | "TIMEOUT"
  | "USER_REFUSED"
  | "NOT_PERMITTED"
  | "RATE_LIMITED"
  | "SIGN_UNSUPPORTED"
  | "CARD_LOCKED"
  | "VERIFICATION_FAILED"
  | "INTERNAL";

export interface Ins {
  matricule: string;
  /** 1.2.250.1.213.1.4.8 NIR, .9 NIA, .10 test, .11 demo. */
  oid: string;
}

/** A data scope of an allowed origin (docs/protocol.md, "Scopes"). */
export type Scope = "identity" | "nir" | "ins" | "sign";

export interface Beneficiary {
  index: number;
  /** null without the `identity` scope. */
  surname: string | null;
  /** null without the `identity` scope. */
  givenName: string | null;
  /** YYYY-MM-DD, or null for a lunar (partially unknown) date or without the `identity` scope. */
  birthDate: string | null;
  /** As stored on the card (AAAAMMJJ); null without the `identity` scope. */
  birthDateRaw: string | null;
  /** null without the `identity` scope. */
  birthDateLunar: boolean | null;
  /** 15 characters (13 + key), or null (none on the card, or no `nir` scope). */
  nir: string | null;
  /** null without a NIR or without the `nir` scope. */
  nirKeyValid: boolean | null;
  /** Only when the source itself carries an INS (phones) and the origin has the `ins` scope; never derived from a card NIR. */
  ins: Ins | null;
}

export interface Identity {
  source: "vitale-card" | "apcv";
  profile: string;
  reader: string;
  cardType: CardType;
  environment: "production" | "test" | "demo" | "unknown";
  beneficiaries: Beneficiary[];
  /** Phones only, and only with the `ins` scope. */
  apcv?: { context: string; expires: string };
}

export interface Card {
  /** Uppercase hex. */
  atr: string;
  cardType: CardType;
  identity?: Identity;
}

export interface Reader {
  id: string;
  name: string;
  kind: "pcsc" | "nfc" | "simulated";
  contactless: boolean;
  state: ReaderState;
  card: Card | null;
}

export interface Signature {
  reader: string;
  alg: "ES256";
  /** The origin the signature is bound to (`native:` for native clients). */
  origin: string;
  challenge: string;
  /** SEC1 uncompressed P-256 key, base64url. */
  publicKey: string;
  /** r‖s, base64url. */
  signature: string;
  verified: true;
}

export interface Redacted {
  redacted: true;
}

export interface EventDataMap {
  "reader.added": Reader;
  "reader.removed": Reader;
  "card.inserted": { atr: string; cardType: CardType };
  "card.reading": { step: number; total: number };
  "identity.read": Identity | Redacted;
  "identity.error": { reason: Reason; message: string };
  "card.removed": Record<string, never>;
  "signature.completed": Signature | Redacted;
  "service.changed": { service: "pcsc" | "nfc"; state: "up" | "down"; detail: string };
}

export type EventType = keyof EventDataMap;

export interface ProtocolEvent<T extends EventType = EventType> {
  seq: number;
  /** RFC 3339 UTC with milliseconds. */
  time: string;
  type: T;
  reader: string | null;
  data: EventDataMap[T];
}

export interface HelloResult {
  server: "vitale-bridge";
  version: string;
  protocol: 1;
  capabilities: string[];
  /** The data scopes of this connection's origin. */
  scopes: Scope[];
}

export interface StatusResult {
  pcsc: "up" | "down" | "disabled";
  nfc: { connstring: string; state: "up" | "down" }[];
  clients: number;
  uptimeMs: number;
}

/**
 * The browser's Local Network Access state for this page reaching 127.0.0.1, from the
 * Permissions API (`loopback-network`, or `local-network-access` in Chromium 142–144):
 * `allowed` (granted, by the user or a policy), `needs-permission` (prompt: the user
 * must allow it, or an admin pre-approve the site), `blocked-by-browser` (denied, or
 * the page is plain http), `unknown` (no such permission in this browser). Once a
 * socket opens the state is `allowed`, whatever the Permissions API said.
 */
export type LoopbackPermission = "allowed" | "needs-permission" | "blocked-by-browser" | "unknown";

export declare const LOOPBACK_PERMISSION_NAMES: readonly string[];

/** Queries the Permissions API without connecting. */
export declare function queryLoopbackPermission(
  permissions?: Pick<Permissions, "query"> | null,
): Promise<{ state: LoopbackPermission; name: string | null; status: PermissionStatus | null }>;

export interface DisconnectedDetail {
  code: number;
  reason: string;
  willReconnect: boolean;
  delayMs: number | null;
  /** The permission state queried before this attempt. */
  permission: LoopbackPermission;
}

/** Detail of each event this client dispatches. */
export type ClientEventMap = { [K in EventType]: ProtocolEvent<K> } & {
  event: ProtocolEvent;
  readers: Map<string, Reader>;
  connected: HelloResult;
  disconnected: DisconnectedDetail;
  resync: { expected: number; got: number };
  permission: { state: LoopbackPermission };
};

export interface BackoffOptions {
  /** First delay (default 250 ms). */
  initialMs?: number;
  /** Largest delay (default 10000 ms). */
  maxMs?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
  /** ± fraction of randomness (default 0.2). */
  jitter?: number;
}

export interface VitaleBridgeOptions {
  /** Default ws://127.0.0.1:24880/v1. */
  url?: string;
  /** WebSocket constructor; defaults to globalThis.WebSocket. */
  WebSocket?: new (url: string) => WebSocket;
  /** Name sent in `hello`. */
  client?: string;
  /** Subscribe to events (default true). */
  subscribe?: boolean;
  /** Reconnect with backoff after a lost connection (default true). */
  reconnect?: boolean;
  backoff?: BackoffOptions;
  /** Per-request limit (default 75000 ms). */
  requestTimeoutMs?: number;
  /** Permissions API to ask before connecting (default `navigator.permissions`; null: none). */
  permissions?: Pick<Permissions, "query"> | null;
}

export declare class VitaleBridgeError extends Error {
  /** JSON-RPC code (-32000 application, -326xx protocol) or a client-side code. */
  readonly code: number | "NOT_CONNECTED" | "DISCONNECTED" | "TIMEOUT" | "CLOSED";
  /** Stable reason (application errors and connection errors), else null. */
  readonly reason: Reason | null;
  /** Whether the same request may succeed later. */
  readonly retriable: boolean;
  readonly data: unknown;
  /** On a failed connect(): the browser's permission state at that attempt. */
  readonly permission?: LoopbackPermission;
  constructor(message: string, info: { code: number | string; reason?: Reason | null; retriable?: boolean; data?: unknown });
  static fromRpc(error: { code: number; message: string; data?: unknown }): VitaleBridgeError;
}

export declare class BridgeEvent<D = unknown> extends Event {
  readonly detail: D;
  constructor(type: string, detail: D);
}

export declare class VitaleBridge extends EventTarget {
  constructor(options?: VitaleBridgeOptions);
  /** Reader map kept from the subscribe snapshot and later events (a copy). */
  readonly readers: Map<string, Reader>;
  readonly server: HelloResult | null;
  readonly connected: boolean;
  readonly seq: number | null;
  /** Permission state queried before the latest connection attempt. */
  readonly permission: LoopbackPermission;
  connect(): Promise<HelloResult>;
  close(): void;
  on<K extends keyof ClientEventMap>(type: K, fn: (detail: ClientEventMap[K]) => void): () => void;
  call<T = unknown>(method: string, params?: unknown): Promise<T>;
  hello(): Promise<HelloResult>;
  status(): Promise<StatusResult>;
  listReaders(): Promise<Reader[]>;
  read(reader: string, options?: { fresh?: boolean }): Promise<Identity>;
  sign(reader: string, challenge: string | Uint8Array | ArrayBuffer): Promise<Signature>;
}

export declare function backoffDelay(attempt: number, options?: BackoffOptions, random?: () => number): number;
export declare function applyEvent(readers: Map<string, Reader>, event: ProtocolEvent): boolean;
export declare function randomChallenge(length?: number): string;

export default VitaleBridge;
