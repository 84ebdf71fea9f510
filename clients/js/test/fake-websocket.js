// In-process fake of the browser WebSocket API, for unit tests of the client's
// state handling (the real daemon is exercised in daemon.test.js).

export class FakeServer {
  constructor() {
    this.sockets = [];
    this.refuse = false;
    this.onRequest = null; // (socket, request) => void
  }

  /** A WebSocket constructor bound to this fake server. */
  get WebSocket() {
    const server = this;
    return class FakeWebSocket {
      constructor(url) {
        this.url = url;
        this.readyState = 0;
        this.sent = [];
        server.sockets.push(this);
        queueMicrotask(() => {
          if (server.refuse) {
            this.readyState = 3;
            this.onerror?.({});
            this.onclose?.({ code: 1006, reason: "" });
            return;
          }
          this.readyState = 1;
          this.onopen?.({});
        });
      }
      send(text) {
        const msg = JSON.parse(text);
        this.sent.push(msg);
        server.onRequest?.(this, msg);
      }
      close(code = 1000) {
        if (this.readyState === 3) return;
        this.readyState = 3;
        queueMicrotask(() => this.onclose?.({ code, reason: "" }));
      }
      /** Server side: deliver a message to the client. */
      deliver(msg) {
        this.onmessage?.({ data: JSON.stringify(msg) });
      }
      /** Server side: drop the connection. */
      drop() {
        this.readyState = 3;
        this.onclose?.({ code: 1006, reason: "" });
      }
    };
  }
}

/** Resolves when `predicate()` is true, polling each macrotask, failing after `ms`. */
export async function until(predicate, ms = 2000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 1));
  }
}
