"""deploy/rbac.yaml grants exactly the Kubernetes calls the agent makes: the calls are read from
node/cluster/kube.py and node/tee_gate.py, and what each one asks of the API server (group,
resource, verb) from the kubernetes client's own code, the path and HTTP method it sends."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from node.cluster.kube import PRIORITY_CLASS
from node.config import KubeConfig

ROOT = Path(__file__).resolve().parent.parent
RBAC = ROOT / "deploy" / "rbac.yaml"
CALLERS = (ROOT / "node" / "cluster" / "kube.py", ROOT / "node" / "tee_gate.py")
APIS = (client.CoreV1Api, client.SchedulingV1Api, client.NodeV1Api)
CALL = re.compile(r"\b((?:list|read|create|delete|patch|replace|watch|connect)_[a-z_]+)\b")
# the request the generated client sends: call_api('/api/v1/namespaces/{namespace}/pods', 'GET'
REQUEST = re.compile(r"call_api\(\s*'([^']+)',\s*'([A-Z]+)'")
VERBS = {("GET", False): "list", ("GET", True): "get", ("POST", False): "create",
         ("DELETE", True): "delete", ("DELETE", False): "deletecollection",
         ("PUT", True): "update", ("PATCH", True): "patch"}
MODELS = {"Namespace": "V1Namespace", "ServiceAccount": "V1ServiceAccount",
          "ClusterRole": "V1ClusterRole", "ClusterRoleBinding": "V1ClusterRoleBinding",
          "Role": "V1Role", "RoleBinding": "V1RoleBinding"}


class _Reply:
    """What ApiClient.deserialize reads: an answer's body."""

    def __init__(self, doc: dict):
        self.data = json.dumps(doc)


def api_calls() -> set[str]:
    """The client methods the agent's code names (it hands them to call_api, or calls them)."""
    names = {m for path in CALLERS for m in CALL.findall(path.read_text())}
    return {m for m in names if any(hasattr(api, m) for api in APIS)}


def permission(method: str) -> tuple[str, str, str, bool]:
    """(API group, resource, verb, namespaced) that `method` asks for, from its request."""
    api = next(a for a in APIS if hasattr(a, method))
    path, http = REQUEST.search(inspect.getsource(getattr(api, method + "_with_http_info"))
                                ).groups()
    parts = path.strip("/").split("/")
    group = "" if parts[0] == "api" else parts[1]
    rest = parts[2:] if parts[0] == "api" else parts[3:]
    namespaced = len(rest) > 1 and rest[0] == "namespaces" and rest[1] == "{namespace}"
    if namespaced:
        rest = rest[2:]
    item = len(rest) > 1 and rest[1].startswith("{")
    return group, rest[0], VERBS[(http, item)], namespaced


def docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(RBAC.read_text()) if d]


def granted(kind: str) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for d in docs() if d["kind"] == kind
            for rule in d["rules"] for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}


def test_the_agent_names_the_calls_it_makes():
    calls = api_calls()
    assert {"create_namespaced_pod", "delete_namespaced_pod", "list_namespace",
            "create_priority_class", "read_node"} <= calls  # the reading itself works


def test_every_document_is_a_valid_kubernetes_object():
    kinds = []
    for doc in docs():
        model = client.ApiClient().deserialize(_Reply(doc), MODELS[doc["kind"]])
        assert model.metadata.name, doc
        kinds.append(doc["kind"])
    assert sorted(kinds) == sorted(MODELS)


def test_the_roles_grant_exactly_the_calls_the_agent_makes():
    needed = {permission(m) for m in api_calls()}
    cluster = {(g, r, v) for g, r, v, namespaced in needed if not namespaced}
    in_namespace = {(g, r, v) for g, r, v, namespaced in needed if namespaced}
    assert granted("ClusterRole") == cluster
    assert granted("Role") == in_namespace
    assert ("", "pods", "create") in in_namespace and ("", "nodes", "get") in cluster


def test_pods_only_in_sunrigs_namespace_and_only_its_own_class_may_be_deleted():
    role = next(d for d in docs() if d["kind"] == "Role")
    assert role["metadata"]["namespace"] == KubeConfig().namespace
    deletes = [rule for d in docs() if d["kind"] == "ClusterRole" for rule in d["rules"]
               if "priorityclasses" in rule["resources"] and "delete" in rule["verbs"]]
    assert [rule.get("resourceNames") for rule in deletes] == [[PRIORITY_CLASS]]


@pytest.mark.parametrize("binding, role", [("ClusterRoleBinding", "ClusterRole"),
                                           ("RoleBinding", "Role")])
def test_each_role_is_bound_to_sunrigs_service_account(binding, role):
    account = next(d for d in docs() if d["kind"] == "ServiceAccount")["metadata"]
    bound = next(d for d in docs() if d["kind"] == binding)
    named = next(d for d in docs() if d["kind"] == role)["metadata"]["name"]
    assert bound["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role,
                                "name": named}
    assert bound["subjects"] == [{"kind": "ServiceAccount", "name": account["name"],
                                  "namespace": account["namespace"]}]
