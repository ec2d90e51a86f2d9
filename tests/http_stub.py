"""What the local HTTP stand-ins for outside APIs share: a JSON answer and a quiet server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class JsonHandler(BaseHTTPRequestHandler):
    def send_json(self, status: int, doc: object) -> None:
        self.send_body(status, json.dumps(doc).encode())

    def send_body(self, status: int, body: bytes) -> None:
        """`body` as it is, labelled JSON: what a peer that answers garbage sends."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


def serve(handler: type[BaseHTTPRequestHandler]) -> tuple[ThreadingHTTPServer, str]:
    """Serve on 127.0.0.1 on a free port, in a daemon thread; returns the server and its URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"
