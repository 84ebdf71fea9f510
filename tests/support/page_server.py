# The public site of the Local Network Access tests (tests/support/lna.rs): serves one
# directory over https (port 443, the test's throwaway certificate) and plain http
# (port 80) on the given address inside the test's network namespace. Prints "ready"
# once both listen. Stopped by the test (SIGKILL on drop).
import http.server
import ssl
import sys
import threading

root, cert, key, host = sys.argv[1:5]


class Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=root, **kwargs)

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def log_message(self, *args):
        pass


# Module scripts need a JavaScript MIME type.
Handler.extensions_map[".js"] = "text/javascript"

tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain(cert, key)
https = http.server.ThreadingHTTPServer((host, 443), Handler)
# The TLS handshake runs in each connection's thread, not in accept().
https.socket = tls.wrap_socket(https.socket, server_side=True, do_handshake_on_connect=False)
plain = http.server.ThreadingHTTPServer((host, 80), Handler)
threading.Thread(target=plain.serve_forever, daemon=True).start()
print("ready", flush=True)
https.serve_forever()
