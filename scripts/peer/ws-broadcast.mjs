// Minimal Node.js `ws` broadcast server: the fan-out baseline scripts/bench compares
// vitale-bridge against. It replays events recorded from `vitale-bridge demo` (the
// load tool's --record file: same JSON shape and size, same relative timing) to every
// subscribed client, with a fresh `seq` and `time` (ms, like the daemon's) each.
//
// It answers just enough JSON-RPC (hello, subscribe, status) for the load tool's
// clients to run unchanged. No origin checks, limits or slow-client policy: the
// simplest server a Node developer would write, which is the point of a baseline.
//
//   node scripts/peer/ws-broadcast.mjs --templates events.json [--port 0] [--wait-for N]
//
// --wait-for N holds the replay until N clients have subscribed: under a 1,000-client
// broadcast node's single event loop accepts new connections too slowly for the load
// tool's 30 s connect bound (measured: 837 of 1,000 in 97 s), so scripts/bench
// compares steady-state fan-out with every client in.
//
// Prints `listening on ws://127.0.0.1:PORT/v1` once ready, like the daemon.
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { WebSocketServer } from "ws";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
    const i = args.indexOf(name);
    return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const templatesPath = opt("--templates");
if (!templatesPath) {
    console.error("usage: ws-broadcast.mjs --templates FILE [--port N] [--wait-for N]");
    process.exit(2);
}
// [{atMs, message}] with message a JSON-RPC `event` notification as text.
const templates = JSON.parse(readFileSync(templatesPath, "utf8")).map((t) => ({
    atMs: t.atMs,
    body: JSON.parse(t.message),
}));
if (templates.length < 2) {
    console.error("need at least two recorded events");
    process.exit(2);
}
const span = templates[templates.length - 1].atMs - templates[0].atMs;
const period = span + span / (templates.length - 1); // one mean gap before repeating

const waitFor = Number(opt("--wait-for", "0"));
let subscribers = 0;
let started = false;
let seq = 0;
const wss = new WebSocketServer({ host: "127.0.0.1", port: Number(opt("--port", "0")) });

wss.on("connection", (ws) => {
    ws.subscribed = false;
    ws.on("message", (data) => {
        let req;
        try {
            req = JSON.parse(data.toString());
        } catch {
            return;
        }
        let result;
        switch (req.method) {
            case "hello":
                result = { server: "ws-broadcast", version: "0", protocol: 1, capabilities: [] };
                break;
            case "subscribe":
                if (!ws.subscribed) subscribers += 1;
                ws.subscribed = true;
                result = { seq, snapshot: { readers: [] } };
                if (!started && subscribers >= waitFor) setImmediate(startReplay);
                break;
            case "status":
                result = { clients: wss.clients.size };
                break;
            default:
                ws.send(JSON.stringify({ jsonrpc: "2.0", id: req.id, error: { code: -32601, message: "unknown method" } }));
                return;
        }
        ws.send(JSON.stringify({ jsonrpc: "2.0", id: req.id, result }));
    });
    ws.on("error", () => {});
});

function broadcast(t) {
    seq += 1;
    t.body.params.seq = seq;
    t.body.params.time = new Date().toISOString();
    // Serialised and UTF-8 encoded once, sent to all (a string would be re-encoded
    // per client).
    const data = Buffer.from(JSON.stringify(t.body));
    for (const c of wss.clients) {
        if (c.subscribed && c.readyState === 1) c.send(data, { binary: false });
    }
}

// Replays the recording in a loop on the recorded offsets; events due in the same
// tick go out back to back, as the daemon's bursts (inserted, reading…, identity) do.
let start = 0;
let i = 0;
let cycle = 0;
function tick() {
    const now = performance.now() - start;
    for (;;) {
        const t = templates[i];
        const due = cycle * period + (t.atMs - templates[0].atMs);
        if (due > now) {
            setTimeout(tick, Math.max(0, due - now));
            return;
        }
        broadcast(t);
        i += 1;
        if (i === templates.length) {
            i = 0;
            cycle += 1;
        }
    }
}

wss.on("listening", () => {
    const { port } = wss.address();
    process.stdout.write(`listening on ws://127.0.0.1:${port}/v1\n`);
    if (waitFor <= 0) startReplay();
});

function startReplay() {
    if (started) return;
    started = true;
    start = performance.now();
    tick();
}

const stop = () => process.exit(0);
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
