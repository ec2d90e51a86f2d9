"""An in-process stand-in for the few Kubernetes API endpoints sunrig uses, answering as the
API server does, so the real client's code path runs against it over HTTP on 127.0.0.1:

- pods in a namespace: list (label selectors `key`, `key=value`, `key!=value`, comma-joined;
  the field selector `spec.nodeName=`), create, delete. A created pod gets `uid`,
  `creationTimestamp` and `status.phase: Pending`, as the API server stores it before the
  scheduler and kubelet act; the Priority admission plugin fills `spec.priority` and
  `spec.preemptionPolicy` from the pod's PriorityClass and refuses (403) a class that does not
  exist (kubernetes/kubernetes plugin/pkg/admission/priority/admission.go).
- namespaces: list with label selectors (Akash labels each lease's namespace).
- scheduling.k8s.io/v1 priorityclasses: list, create (409 when it exists), delete.

Phases after creation are what a test makes the kubelet do: `set_phase`.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from tests.http_stub import JsonHandler, serve

PODS = re.compile(r"^/api/v1/namespaces/([^/]+)/pods(?:/([^/]+))?$")
NAMESPACES = re.compile(r"^/api/v1/namespaces$")
CLASSES = re.compile(r"^/apis/scheduling\.k8s\.io/v1/priorityclasses(?:/([^/]+))?$")
STAMP = "%Y-%m-%dT%H:%M:%SZ"


def write_kubeconfig(path: Path, server_url: str) -> Path:
    """An owner's kubeconfig for the API at `server_url`, as kubectl writes one (YAML's flow
    style is JSON)."""
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "rig",
        "clusters": [{"name": "rig", "cluster": {"server": server_url}}],
        "users": [{"name": "owner", "user": {}}],
        "contexts": [{"name": "rig", "context": {"cluster": "rig", "user": "owner"}}]}))
    return path


def matches(labels: dict, selector: str) -> bool:
    """The API server's equality-based label selector."""
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.split("=", 1)
            if labels.get(key.rstrip("=")) != value.lstrip("="):
                return False
        elif term not in labels:
            return False
    return True


class FakeKube:
    def __init__(self):
        self.pods: dict[tuple[str, str], dict] = {}
        self.namespaces: dict[str, dict] = {}
        self.classes: dict[str, dict] = {}
        self.fail_next: list[int] = []
        self.calls: list[str] = []
        fake = self

        class Handler(JsonHandler):
            def _route(self):
                url = urlsplit(self.path)
                fake.calls.append(f"{self.command} {url.path}")
                if fake.fail_next:
                    return self._status(fake.fail_next.pop(0), "InternalError")
                q = {k: v[0] for k, v in parse_qs(url.query).items()}
                answer = fake.answer(self.command, url.path, q, self._body)
                if answer[0] >= 400:
                    return self._status(*answer)
                return self.send_json(*answer)

            do_GET = do_POST = do_DELETE = _route  # noqa: N815

            def _body(self) -> dict:
                return json.loads(self.rfile.read(int(self.headers["Content-Length"])))

            def _status(self, code, reason, message=""):
                self.send_json(code, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                      "status": "Failure", "message": message,
                                      "reason": reason, "code": code})

        self.httpd, self.url = serve(Handler)

    # --- the API -------------------------------------------------------------------------------
    def answer(self, method: str, path: str, q: dict, body) -> tuple:
        if m := PODS.match(path):
            return self._pods(method, m.group(1), m.group(2), q, body)
        if NAMESPACES.match(path) and method == "GET":
            items = [ns for ns in self.namespaces.values()
                     if matches(ns["metadata"].get("labels") or {}, q.get("labelSelector", ""))]
            return 200, _list("NamespaceList", "v1", items)
        if m := CLASSES.match(path):
            return self._classes(method, m.group(1), q, body)
        return 404, "NotFound", f"the server could not find the requested resource ({path})"

    def _pods(self, method: str, ns: str, name: str | None, q: dict, body) -> tuple:
        if method == "GET" and name is None:
            return 200, _list("PodList", "v1", self.select(ns, q))
        if method == "POST" and name is None:
            return self._create_pod(ns, body())
        if method == "DELETE" and name is not None:
            pod = self.pods.pop((ns, name), None)
            if pod is None:
                return 404, "NotFound", f'pods "{name}" not found'
            return 200, pod
        return 405, "MethodNotAllowed", ""

    def _create_pod(self, ns: str, pod: dict) -> tuple:
        name = pod["metadata"]["name"]
        if (ns, name) in self.pods:
            return 409, "AlreadyExists", f'pods "{name}" already exists'
        spec = pod["spec"]
        class_name = spec.get("priorityClassName")
        if class_name:
            pc = self.classes.get(class_name)
            if pc is None:
                return (403, "Forbidden", f'pods "{name}" is forbidden: no PriorityClass with '
                        f"name {class_name} was found")
            spec["priority"] = pc["value"]
            spec["preemptionPolicy"] = pc.get("preemptionPolicy", "PreemptLowerPriority")
        pod["metadata"].update(namespace=ns, uid=str(uuid.uuid4()),
                               creationTimestamp=datetime.now(UTC).strftime(STAMP))
        pod["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        self.pods[(ns, name)] = pod
        return 201, pod

    def _classes(self, method: str, name: str | None, q: dict, body) -> tuple:
        if method == "GET" and name is None:
            items = [c for c in self.classes.values()
                     if matches(c["metadata"].get("labels") or {}, q.get("labelSelector", ""))]
            return 200, _list("PriorityClassList", "scheduling.k8s.io/v1", items)
        if method == "POST" and name is None:
            pc = body()
            key = pc["metadata"]["name"]
            if key in self.classes:
                return (409, "AlreadyExists",
                        f'priorityclasses.scheduling.k8s.io "{key}" already exists')
            pc["metadata"]["creationTimestamp"] = datetime.now(UTC).strftime(STAMP)
            self.classes[key] = pc
            return 201, pc
        if method == "DELETE" and name is not None:
            pc = self.classes.pop(name, None)
            return (200, pc) if pc else (404, "NotFound", "")
        return 405, "MethodNotAllowed", ""

    def select(self, ns: str, q: dict) -> list[dict]:
        out = []
        for (pod_ns, _), pod in sorted(self.pods.items()):
            if pod_ns != ns or not matches(pod["metadata"].get("labels") or {},
                                           q.get("labelSelector", "")):
                continue
            node = q.get("fieldSelector", "").removeprefix("spec.nodeName=")
            if node and pod["spec"].get("nodeName") != node:
                continue
            out.append(pod)
        return out

    # --- what a test makes the cluster do ---------------------------------------------------------
    def add(self, pod: dict) -> None:
        self.pods[(pod["metadata"]["namespace"], pod["metadata"]["name"])] = pod

    def add_namespace(self, name: str, labels: dict) -> None:
        self.namespaces[name] = {"metadata": {"name": name, "labels": labels},
                                 "status": {"phase": "Active"}}

    def set_phase(self, ns: str, name: str, phase: str, reason: str | None = None,
                  message: str | None = None, conditions: list | None = None) -> None:
        """What the kubelet (or scheduler) writes into a pod's status."""
        status = {"phase": phase}
        if reason:
            status["reason"] = reason
        if message:
            status["message"] = message
        if conditions:
            status["conditions"] = conditions
        self.pods[(ns, name)]["status"] = status

    def age(self, ns: str, name: str, seconds: float) -> None:
        """Make a pod `seconds` old, as if created that long ago."""
        then = datetime.now(UTC) - timedelta(seconds=seconds)
        self.pods[(ns, name)]["metadata"]["creationTimestamp"] = then.strftime(STAMP)

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _list(kind: str, api_version: str, items: list) -> dict:
    return {"kind": kind, "apiVersion": api_version, "metadata": {"resourceVersion": "1"},
            "items": items}


class FakeKubelet:
    """The kubelet's PodResources v1 service: a real gRPC server (grpcio) built from the
    kubelet's published proto, on a unix socket, answering `List` and
    `GetAllocatableResources` with what a test sets (protobuf JSON, as `kubectl get --raw`
    would not show it but the proto's own JSON mapping does)."""

    def __init__(self, socket_path: str):
        from concurrent import futures

        import grpc
        from google.protobuf import json_format

        from node.cluster.podresources_pb import api_pb2, api_pb2_grpc

        self.socket_path = socket_path
        self.pod_resources: list[dict] = []
        self.devices: list[dict] = []
        self.fail_next: list = []  # grpc.StatusCode values, answered once each
        fake = self

        class Lister(api_pb2_grpc.PodResourcesListerServicer):
            def List(self, request, context):  # noqa: N802 - the proto's name
                fake._maybe_fail(context)
                return json_format.ParseDict({"pod_resources": fake.pod_resources},
                                             api_pb2.ListPodResourcesResponse())

            def GetAllocatableResources(self, request, context):  # noqa: N802
                fake._maybe_fail(context)
                return json_format.ParseDict({"devices": fake.devices},
                                             api_pb2.AllocatableResourcesResponse())

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        api_pb2_grpc.add_PodResourcesListerServicer_to_server(Lister(), self.server)
        self.server.add_insecure_port(f"unix://{socket_path}")
        self.server.start()

    def _maybe_fail(self, context) -> None:
        if self.fail_next:
            context.abort(self.fail_next.pop(0), "refused by the test")

    def hold(self, namespace: str, pod: str, gpu_ids: list[str], container: str = "main",
             resource: str = "nvidia.com/gpu") -> None:
        """A pod the device plugin gave these GPUs."""
        self.pod_resources.append({"name": pod, "namespace": namespace, "containers": [
            {"name": container, "devices": [{"resource_name": resource,
                                             "device_ids": gpu_ids}]}]})

    def release(self, namespace: str, pod: str) -> None:
        self.pod_resources = [p for p in self.pod_resources
                              if (p["namespace"], p["name"]) != (namespace, pod)]

    def close(self) -> None:
        self.server.stop(grace=None)
