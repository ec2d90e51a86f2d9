"""The GPU split on the rig's Kubernetes: pods that keep GPUs away from the market providers.

Akash's provider and Hyperbolic's HyperdOS both count a GPU requested by any pod on the node as
taken. So the owner's local inference runs as pods requesting `nvidia.com/gpu` in sunrig's
namespace (labelled `sunrig.io/role=local`, deployed by the owner), and for every further GPU
the plan keeps off the market sunrig runs a hold pod: a pause container requesting one GPU,
labelled `sunrig.io/role=hold`. A GPU request cannot change on a running pod, so resizing is
creating or deleting hold pods, one GPU each. Local inference pods are never touched: sunrig
never holds fewer GPUs than local inference is using.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

log = logging.getLogger("sunrig.kube")

GPU = "nvidia.com/gpu"
ROLE = "sunrig.io/role"
HOLD, LOCAL = "hold", "local"
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"


class KubeError(Exception):
    """The Kubernetes API could not be reached or refused a call; the message names it."""


@dataclass(frozen=True)
class Split:
    local_gpus_in_use: int  # requested by the owner's local inference pods
    hold_gpus: int  # hold pods, one GPU each

    @property
    def kept_gpus(self) -> int:
        return self.local_gpus_in_use + self.hold_gpus


class KubeSplit:
    def __init__(self, api: client.CoreV1Api, namespace: str, node_name: str,
                 image: str = PAUSE_IMAGE, timeout_s: float = 10.0):
        self.api, self.namespace, self.node_name = api, namespace, node_name
        self.image, self.timeout_s = image, timeout_s

    def current(self) -> Split:
        pods = self._pods()
        local = sum(_gpus(p) for p in pods if _role(p) == LOCAL and _running(p))
        hold = sum(1 for p in pods if _role(p) == HOLD and p.metadata.deletion_timestamp is None)
        return Split(local, hold)

    def keep(self, gpus_off_market: int) -> Split:
        """Hold pods so that `gpus_off_market` GPUs are requested in sunrig's namespace (at
        least what local inference uses); create or delete hold pods to get there."""
        pods = self._pods()
        local = sum(_gpus(p) for p in pods if _role(p) == LOCAL and _running(p))
        holds = sorted((p for p in pods if _role(p) == HOLD
                        and p.metadata.deletion_timestamp is None),
                       key=lambda p: p.metadata.name)
        want = max(0, gpus_off_market - local)
        names = {p.metadata.name for p in holds}
        for i in range(len(holds), want):
            name = _free_name(names, i)
            names.add(name)
            self._call("create hold pod " + name, self.api.create_namespaced_pod,
                       self.namespace, self._hold_pod(name))
        for pod in holds[want:][::-1]:
            self._call("delete hold pod " + pod.metadata.name, self.api.delete_namespaced_pod,
                       pod.metadata.name, self.namespace, grace_period_seconds=0)
        if want != len(holds):
            log.info("GPUs held off the market: %d (local inference %d, hold pods %d -> %d)",
                     local + want, local, len(holds), want)
        return Split(local, want)

    def _pods(self) -> list:
        doc = self._call("list pods", self.api.list_namespaced_pod, self.namespace,
                         label_selector=ROLE, field_selector=f"spec.nodeName={self.node_name}")
        return list(doc.items or [])

    def _hold_pod(self, name: str) -> client.V1Pod:
        return client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, namespace=self.namespace,
                                         labels={ROLE: HOLD, "app.kubernetes.io/managed-by":
                                                 "sunrig"}),
            spec=client.V1PodSpec(
                node_name=self.node_name, restart_policy="Always",
                termination_grace_period_seconds=0,
                containers=[client.V1Container(
                    name="hold", image=self.image,
                    resources=client.V1ResourceRequirements(limits={GPU: "1"},
                                                            requests={GPU: "1"}))]))

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, _request_timeout=self.timeout_s, **kwargs)
        except ApiException as exc:
            if exc.status == 404 and what.startswith("delete"):
                return None  # already gone: what we wanted
            raise KubeError(f"kubernetes: {what} in {self.namespace}: HTTP {exc.status} "
                            f"{exc.reason}") from None
        except (HTTPError, OSError) as exc:
            raise KubeError(f"kubernetes: {what} in {self.namespace}: {exc}") from None


def _role(pod) -> str | None:
    return (pod.metadata.labels or {}).get(ROLE)


def _running(pod) -> bool:
    phase = pod.status.phase if pod.status else None
    return pod.metadata.deletion_timestamp is None and phase not in ("Succeeded", "Failed")


def _gpus(pod) -> int:
    total = 0
    for c in pod.spec.containers or []:
        res = c.resources
        amount = ((res.limits or {}).get(GPU) or (res.requests or {}).get(GPU)) if res else None
        total += int(amount or 0)
    return total


def _free_name(taken: set[str], start: int) -> str:
    i = start
    while f"sunrig-hold-{i}" in taken:
        i += 1
    return f"sunrig-hold-{i}"


def api_client(kubeconfig: str | None = None, host: str | None = None) -> client.CoreV1Api:
    """In the cluster: the service account; else a kubeconfig (microk8s: its own); `host`
    alone (tests, a local proxy) talks to that API server without credentials."""
    from kubernetes import config as kube_config
    if host:
        cfg = client.Configuration()
        cfg.host = host
        return client.CoreV1Api(client.ApiClient(cfg))
    try:
        kube_config.load_incluster_config()
    except kube_config.ConfigException:
        kube_config.load_kube_config(config_file=kubeconfig)
    return client.CoreV1Api()
