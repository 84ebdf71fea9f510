// Status page client. Connects from the daemon's own origin, which the daemon treats
// as a redacted subscriber: identities never reach this page. Everything shown is
// written with textContent, never parsed as HTML.
"use strict";
(function () {
  var MAX_EVENTS = 50;
  var nextId = 1;
  var pending = {};
  var ws;

  function $(id) { return document.getElementById(id); }

  function cell(row, text) {
    var td = document.createElement("td");
    td.textContent = text == null ? "" : String(text);
    row.appendChild(td);
    return td;
  }

  function call(method, params) {
    return new Promise(function (resolve, reject) {
      var id = nextId++;
      pending[id] = { resolve: resolve, reject: reject };
      ws.send(JSON.stringify({ jsonrpc: "2.0", id: id, method: method, params: params || {} }));
    });
  }

  function renderReaders(readers) {
    var body = $("readers");
    body.textContent = "";
    if (!readers.length) {
      var r = document.createElement("tr");
      cell(r, "none").colSpan = 4;
      body.appendChild(r);
      return;
    }
    readers.forEach(function (reader) {
      var row = document.createElement("tr");
      cell(row, reader.name + " (" + reader.id + ")");
      cell(row, reader.kind + (reader.contactless ? ", contactless" : ""));
      cell(row, reader.state);
      cell(row, reader.card ? reader.card.cardType + " · ATR " + reader.card.atr : "–");
      body.appendChild(row);
    });
  }

  function renderStatus(status) {
    $("clients").textContent = String(status.clients);
    var body = $("services");
    body.textContent = "";
    var row = document.createElement("tr");
    cell(row, "PC/SC");
    cell(row, status.pcsc).className = status.pcsc === "up" ? "up" : "down";
    body.appendChild(row);
    (status.nfc || []).forEach(function (dev) {
      var r = document.createElement("tr");
      cell(r, "NFC " + dev.connstring);
      cell(r, dev.state).className = dev.state === "up" ? "up" : "down";
      body.appendChild(r);
    });
  }

  // Connections closed before sending anything: from the daemon's side, that is what
  // a browser's Local Network Access block looks like (the blocked page only sees
  // close 1006). Same-origin fetch; /diagnostics carries counts only.
  function renderSilent() {
    fetch("/diagnostics", { cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (d) {
        var s = d.silentConnections || {};
        var p = $("silent");
        if (!s.recent) {
          p.hidden = true;
          return;
        }
        p.textContent = s.total + " connection(s) closed before sending anything, the last " +
          s.lastSecondsAgo + " s ago: a browser's Local Network Access check blocking a web page " +
          "(ask the administrator to allow the practice software's site in the browser), or a port scan.";
        p.hidden = false;
      })
      .catch(function () { /* the page keeps working without it */ });
  }

  function addEvent(ev) {
    var body = $("events");
    var row = document.createElement("tr");
    cell(row, ev.seq);
    cell(row, ev.time);
    cell(row, ev.type);
    cell(row, ev.reader || "–");
    body.insertBefore(row, body.firstChild);
    while (body.children.length > MAX_EVENTS) body.removeChild(body.lastChild);
  }

  // Bursts of events (card.reading progress) cause one refresh, well under the
  // per-connection request rate.
  var refreshTimer = null;
  function refresh() {
    if (refreshTimer) return;
    refreshTimer = setTimeout(function () {
      refreshTimer = null;
      call("readers.list").then(function (r) { renderReaders(r.readers); });
      call("status").then(renderStatus);
      renderSilent();
    }, 300);
  }

  function connect() {
    ws = new WebSocket("ws://" + location.host + "/v1");
    ws.onopen = function () {
      $("conn").textContent = "connected";
      $("conn").className = "ok";
      call("hello", { client: "status-page", protocol: 1 }).then(function (h) {
        $("version").textContent = "v" + h.version;
      });
      call("status").then(renderStatus);
      renderSilent();
      call("subscribe").then(function (s) { renderReaders(s.snapshot.readers); });
    };
    ws.onmessage = function (m) {
      var msg;
      try { msg = JSON.parse(m.data); } catch (e) { return; }
      if (msg.method === "event") {
        addEvent(msg.params);
        refresh();
        return;
      }
      var p = pending[msg.id];
      if (!p) return;
      delete pending[msg.id];
      if (msg.error) p.reject(msg.error); else p.resolve(msg.result);
    };
    ws.onclose = function (e) {
      $("conn").textContent = "disconnected (" + e.code + "), retrying…";
      $("conn").className = "bad";
      pending = {};
      setTimeout(connect, 3000);
    };
  }

  connect();
})();
