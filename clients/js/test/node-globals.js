// What a browser has and Debian 12's Node 18 does not: a global Web Crypto (Node >= 19
// has one). Imported first by every test file; the client itself needs only
// crypto.getRandomValues, and only for randomChallenge().
import { webcrypto } from "node:crypto";

globalThis.crypto ??= webcrypto;
