#!/usr/bin/env python3
"""A minimal WebSocket client (standard library only) that tests run as another OS
user: it opens ws://127.0.0.1:PORT/v1, optionally sending an Origin header, and if the
server answers 101 it calls hello and subscribe and waits for an event of the wanted
type. It prints what it got, one line each, for the test to check:

    STATUS <http status>
    MSG <a text frame the server sent>
    DONE <why it stopped>

Usage: ws_probe.py PORT [ORIGIN] [WANTED_EVENT_TYPE]
"""
import base64
import json
import os
import socket
import struct
import sys
import time

TIMEOUT = 20.0


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("closed")
        data += chunk
    return data


def send_text(sock, text):
    payload = text.encode()
    mask = os.urandom(4)
    header = bytes([0x81])
    n = len(payload)
    if n < 126:
        header += bytes([0x80 | n])
    elif n < 65536:
        header += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        header += bytes([0x80 | 127]) + struct.pack(">Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    sock.sendall(header + mask + masked)


def recv_frame(sock):
    b0, b1 = recv_exact(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack(">H", recv_exact(sock, 2))
    elif n == 127:
        (n,) = struct.unpack(">Q", recv_exact(sock, 8))
    return b0 & 0x0F, recv_exact(sock, n)


def main():
    port = int(sys.argv[1])
    origin = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else None
    wanted = sys.argv[3] if len(sys.argv) > 3 else "identity.read"
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    head = (
        f"GET /v1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
    )
    if origin:
        head += f"Origin: {origin}\r\n"
    sock.sendall((head + "\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        chunk = sock.recv(4096)
        if not chunk:
            break
        response += chunk
    status = response.split(b" ", 2)[1].decode() if b" " in response else "none"
    print(f"STATUS {status}", flush=True)
    rest = response.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in response else b""
    if status != "101":
        # Print whatever else the server sends (it must carry no identity).
        try:
            while True:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                rest += chunk
        except OSError:
            pass
        print("BODY " + json.dumps(rest.decode(errors="replace")), flush=True)
        print("DONE refused", flush=True)
        return
    assert rest == b"", "no frame before our first request"
    send_text(sock, json.dumps({"jsonrpc": "2.0", "id": 1, "method": "hello", "params": {}}))
    send_text(sock, json.dumps({"jsonrpc": "2.0", "id": 2, "method": "subscribe", "params": {}}))
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        opcode, payload = recv_frame(sock)
        if opcode == 0x1:
            text = payload.decode()
            print("MSG " + text, flush=True)
            msg = json.loads(text)
            if msg.get("method") == "event" and msg["params"]["type"] == wanted:
                print("DONE got " + wanted, flush=True)
                return
        elif opcode == 0x8:
            print("DONE closed", flush=True)
            return
    print("DONE timeout", flush=True)


if __name__ == "__main__":
    main()
