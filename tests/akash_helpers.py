"""A local stand-in for an Akash chain REST endpoint serving recorded-shape answers."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.http_stub import JsonHandler, serve

DATA = Path(__file__).parent / "data" / "akash"


class ChainServer:
    """Serves leases/list (two pages), deployments/info and blocks/latest on 127.0.0.1.
    `fail_next` answers the next requests with that HTTP status; `requests` counts calls."""

    def __init__(self):
        self.fail_next: list[int] = []
        self.requests: list[str] = []
        self.delay_s = 0.0
        owner = self

        class Handler(JsonHandler):
            def do_GET(self):  # noqa: N802 - the stdlib's name
                owner.requests.append(self.path)
                if owner.delay_s:
                    threading.Event().wait(owner.delay_s)
                if owner.fail_next:
                    self.send_json(owner.fail_next.pop(0), {"code": 13, "message": "internal"})
                    return
                url = urlsplit(self.path)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/akash/market/v1beta5/leases/list":
                    page = "leases_page2.json" if q.get("pagination.key") else "leases_page1.json"
                    self.send_json(200, json.loads((DATA / page).read_text()))
                elif url.path == "/akash/deployment/v1beta4/deployments/info":
                    self.send_json(200, json.loads((DATA / f"deployment_{q['id.dseq']}.json")
                                               .read_text()))
                elif url.path == "/status":
                    self.send_json(200, json.loads((DATA / "provider_status.json").read_text()))
                elif url.path == "/cosmos/base/tendermint/v1beta1/blocks/latest":
                    self.send_json(200, json.loads((DATA / "latest_block.json").read_text()))
                else:
                    self.send_json(404, {"code": 5, "message": "not found"})



        self.httpd, self.url = serve(Handler)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
