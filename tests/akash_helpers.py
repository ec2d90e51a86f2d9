"""A local stand-in for an Akash chain REST endpoint serving recorded-shape answers."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

DATA = Path(__file__).parent / "data" / "akash"


class ChainServer:
    """Serves leases/list (two pages), deployments/info and blocks/latest on 127.0.0.1.
    `fail_next` answers the next requests with that HTTP status; `requests` counts calls."""

    def __init__(self):
        self.fail_next: list[int] = []
        self.requests: list[str] = []
        self.delay_s = 0.0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                owner.requests.append(self.path)
                if owner.delay_s:
                    threading.Event().wait(owner.delay_s)
                if owner.fail_next:
                    self._send(owner.fail_next.pop(0), {"code": 13, "message": "internal"})
                    return
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/akash/market/v1beta5/leases/list":
                    page = "leases_page2.json" if q.get("pagination.key") else "leases_page1.json"
                    self._send(200, json.loads((DATA / page).read_text()))
                elif url.path == "/akash/deployment/v1beta4/deployments/info":
                    self._send(200, json.loads((DATA / f"deployment_{q['id.dseq']}.json")
                                               .read_text()))
                elif url.path == "/status":
                    self._send(200, json.loads((DATA / "provider_status.json").read_text()))
                elif url.path == "/cosmos/base/tendermint/v1beta1/blocks/latest":
                    self._send(200, json.loads((DATA / "latest_block.json").read_text()))
                else:
                    self._send(404, {"code": 5, "message": "not found"})

            def _send(self, status, doc):
                body = json.dumps(doc).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
