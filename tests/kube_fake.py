"""An in-process stand-in for the few Kubernetes API endpoints sunrig uses (pods in one
namespace: list with label and field selectors, create, delete), so the real client's code
path runs against it over HTTP on 127.0.0.1."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

from tests.http_stub import JsonHandler, serve

PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?$")


class FakeKube:
    def __init__(self):
        self.pods: dict[tuple[str, str], dict] = {}
        self.fail_next: list[int] = []
        self.calls: list[str] = []
        fake = self

        class Handler(JsonHandler):
            def _route(self):
                url = urlsplit(self.path)
                fake.calls.append(f"{self.command} {url.path}")
                m = PODS.match(url.path)
                if fake.fail_next:
                    return self._status(fake.fail_next.pop(0), "InternalError")
                if not m:
                    return self._status(404, "NotFound")
                ns, name = m.group(1), m.group(2)
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                if self.command == "GET" and name is None:
                    return self.send_json(200, {"kind": "PodList", "apiVersion": "v1",
                                            "metadata": {"resourceVersion": "1"},
                                            "items": fake.select(ns, q)})
                if self.command == "POST" and name is None:
                    pod = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                    key = (ns, pod["metadata"]["name"])
                    if key in fake.pods:
                        return self._status(409, "AlreadyExists")
                    pod["metadata"]["creationTimestamp"] = datetime.now(UTC).strftime(
                        "%Y-%m-%dT%H:%M:%SZ")
                    pod["status"] = {"phase": "Pending"}
                    fake.pods[key] = pod
                    return self.send_json(201, pod)
                if self.command == "DELETE" and name is not None:
                    pod = fake.pods.pop((ns, name), None)
                    if pod is None:
                        return self._status(404, "NotFound")
                    return self.send_json(200, pod)
                return self._status(405, "MethodNotAllowed")

            do_GET = do_POST = do_DELETE = _route  # noqa: N815

            def _status(self, code, reason):
                self.send_json(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                  "reason": reason, "code": code})



        self.httpd, self.url = serve(Handler)

    def select(self, ns: str, q: dict) -> list[dict]:
        out = []
        for (pod_ns, _), pod in sorted(self.pods.items()):
            labels = pod["metadata"].get("labels") or {}
            if pod_ns != ns:
                continue
            if "labelSelector" in q and q["labelSelector"] not in labels:
                continue  # sunrig selects on the presence of one label key
            node = q.get("fieldSelector", "").removeprefix("spec.nodeName=")
            if node and pod["spec"].get("nodeName") != node:
                continue
            out.append(pod)
        return out

    def add(self, pod: dict) -> None:
        self.pods[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = pod

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
