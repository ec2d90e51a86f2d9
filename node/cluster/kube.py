"""The GPU split on the rig's Kubernetes: pods that keep GPUs away from the market providers.

Akash's provider counts a node's free GPUs as allocatable minus the GPU requests of every
scheduled pod on the node, in all namespaces, so a pod holding a GPU takes it off what Akash
bids. Hyper-dOS's rental pods are pinned to the node by a nodeSelector on
kubernetes.io/hostname (not nodeName) and name no schedulerName, so the default scheduler
places them and they too cannot land on a GPU another pod holds: they stay Pending instead
(HyperbolicLabs/Hyper-dOS gitapps/buffalo/instance/templates/deployment.yaml; their GPU count
comes in `resources` from Hyperbolic's control plane, whose placement code is not public). The
chart's instance pods have no tolerations by default, but neither do Akash's workloads, so a
taint would keep both off the node: no taint or label divides one node's GPUs between the two.
Whether Hyperbolic's listing leaves a held GPU out is not public either: Hyper-dOS's agent
(epitome) registers only the cluster's name (mode/jungle/register.go) and labels the node's
CPU; whatever counts GPUs does so from Hyperbolic's side. `gpus_off_market` says how the two
markets' shares are kept with hold pods alone.

So the owner's local inference runs as pods requesting `nvidia.com/gpu` in sunrig's namespace
(labelled `sunrig.io/role=local`, deployed by the owner), and for every further GPU the plan
keeps off the market sunrig runs a hold pod: a pause container requesting one GPU, labelled
`sunrig.io/role=hold`. A GPU request cannot change on a running pod, so resizing is creating
or deleting hold pods, one GPU each. Local inference pods are never touched.

A hold pod counts only while it is Running and the kubelet's PodResources shows it holding a
GPU. One the kubelet rejected (Failed: UnexpectedAdmissionError, Evicted, ...) or that stays
Pending past a grace is deleted, replaced and reported. Hold pods run in a PriorityClass of a
high value: the scheduler preempts only pods of lower priority than the pending pod, so a
tenant's pod (priority 0 from Akash and HyperdOS, which set no class) can never preempt them;
the class's preemptionPolicy is Never, so a hold pod waits for a free GPU and never evicts a
running lease itself (kubernetes.io/docs/concepts/scheduling-eviction/pod-priority-preemption,
"Non-preempting PriorityClass"; Hyper-dOS's own GPU filler is the opposite: a negative value,
gitapps/buffalo/hyperpool/templates/priorityclass.yaml).
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from urllib3.exceptions import HTTPError

from node.cluster.podresources import (
    Holder,
    Owners,
    PodGpus,
    PodResources,
    PodResourcesError,
    gpu_holders,
)

if TYPE_CHECKING:  # the client is imported where it is used: a rig without [kube] never loads it
    from kubernetes import client

log = logging.getLogger("sunrig.kube")

GPU = "nvidia.com/gpu"
ROLE = "sunrig.io/role"
HOLD, LOCAL = "hold", "local"
MANAGED_BY = "app.kubernetes.io/managed-by"
SUNRIG = "sunrig"
LABELS = {MANAGED_BY: SUNRIG}  # on everything sunrig creates; `remove_all` selects on it
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"
PRIORITY_CLASS = "sunrig-hold"
PRIORITY_VALUE = 1_000_000  # above any tenant's (0), below the system classes (2e9)
# Akash names a lease's namespace by it and labels the namespace with the lease's id
# (akash-network/provider cluster/kube/builder/builder.go AppendLeaseLabels)
AKASH_LEASE_LABELS = ("akash.network/lease.id.owner", "akash.network/lease.id.dseq",
                      "akash.network/lease.id.gseq", "akash.network/lease.id.oseq")
# LidNS: lower-case unpadded base32hex of a SHA-224, 45 characters (cluster/util/
# lease_id_to_namespace.go); the shape alone says "an Akash lease" where labels cannot be read
AKASH_NAMESPACE = re.compile(r"[0-9a-v]{45}")
REASON_CHARS = 200


class KubeError(Exception):
    """The Kubernetes API could not be reached or refused a call; the message names it."""


@dataclass(frozen=True)
class Split:
    local_gpus_in_use: int  # requested by the owner's local inference pods
    hold_gpus: int  # hold pods Running with their GPU, one each
    starting: int = 0  # hold pods created and not yet holding, within their grace
    replaced: tuple[str, ...] = ()  # why each rejected hold pod was replaced, this pass
    # who holds each physical GPU, by UUID; None where PodResources is not read
    holders: Mapping[str, Holder] | None = None

    @property
    def kept_gpus(self) -> int:
        return self.local_gpus_in_use + self.hold_gpus


class KubeSplit:
    def __init__(self, api: client.CoreV1Api, namespace: str, node_name: str,
                 image: str = PAUSE_IMAGE, timeout_s: float = 10.0,
                 pod_resources: PodResources | None = None,
                 hyperbolic_namespaces: Collection[str] = ("instance", "hyperpool"),
                 local_namespaces: Collection[str] = (), grace_s: float = 300.0,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.api, self.namespace, self.node_name = api, namespace, node_name
        self.image, self.timeout_s = image, timeout_s
        self.pod_resources = pod_resources  # None: hold pods count by their phase alone
        self.hyperbolic_namespaces = tuple(hyperbolic_namespaces)
        self.local_namespaces = (namespace, *local_namespaces)
        # the API server's clock stamps pods, so their age is measured in real time
        self.grace_s, self.now = grace_s, now
        self._class_ready = False
        self.last: Split | None = None  # the last pass's result, for roles between passes

    def current(self) -> Split:
        pods = self._pods()
        holds = [p for p in pods if _role(p) == HOLD and not _deleting(p)]
        held = self._held_pods(self._gpu_pods())
        local = _local_gpus(pods)
        return Split(local, sum(1 for p in holds if self._hold_state(p, held)[0] == "holding"))

    def keep(self, gpus_off_market: int) -> Split:
        """Hold pods so that `gpus_off_market` GPUs are requested in sunrig's namespace (at
        least what local inference uses): replace rejected hold pods, then create or delete
        hold pods to get there. The result says which physical GPU each pod holds."""
        self._ensure_priority_class()
        pods = self._pods()
        gpu_pods = self._gpu_pods()
        held = self._held_pods(gpu_pods)
        local = _local_gpus(pods)
        live, replaced = [], []
        for pod in sorted((p for p in pods if _role(p) == HOLD and not _deleting(p)),
                          key=lambda p: p.metadata.name):
            state, why = self._hold_state(pod, held)
            if state == "rejected":
                self._delete(pod.metadata.name)
                replaced.append(f"hold pod {pod.metadata.name} replaced: {why}")
                log.warning("hold pod %s replaced: %s", pod.metadata.name, why)
            else:
                live.append((state, pod))
        want = max(0, gpus_off_market - local)
        live.sort(key=lambda sp: (sp[0] != "holding", sp[1].metadata.name))  # holding first
        names = {p.metadata.name for p in pods if _role(p) == HOLD}
        for i in range(len(live), want):
            name = _free_name(names, i)
            names.add(name)
            self._call("create hold pod " + name, self.api.create_namespaced_pod,
                       self.namespace, self._hold_pod(name))
        for _, pod in live[want:][::-1]:  # those not yet holding go first
            self._delete(pod.metadata.name)
        kept = live[:want]
        if want != len(live):
            log.info("GPUs held off the market: %d (local inference %d, hold pods %d -> %d)",
                     local + want, local, len(live), want)
        holding = sum(1 for state, _ in kept if state == "holding")
        hold_names = {(self.namespace, p.metadata.name) for _, p in kept}
        self.last = Split(local, holding, want - holding, tuple(replaced),
                          self._holders(gpu_pods, hold_names))
        return self.last

    def _hold_state(self, pod, held: set[str] | None) -> tuple[str, str]:
        """holding, starting (within the grace) or rejected, with why for the last."""
        status = pod.status
        phase = status.phase if status else None
        if phase in ("Failed", "Succeeded"):  # the kubelet rejected or evicted it
            return "rejected", _why(phase, status)
        name = pod.metadata.name
        gpu = held is None or name in held
        if phase == "Running" and gpu:
            return "holding", ""
        age_s = self._age_s(pod)
        if age_s is not None and age_s <= self.grace_s:
            return "starting", ""
        if phase == "Running":
            return "rejected", f"Running for {age_s:.0f} s without a GPU in the kubelet's view"
        return "rejected", f"{phase or 'no phase'} for {_age_text(age_s)}: {_why(phase, status)}"

    def _age_s(self, pod) -> float | None:
        created = pod.metadata.creation_timestamp
        return None if created is None else (self.now() - created).total_seconds()

    def _gpu_pods(self) -> list[PodGpus] | None:
        """PodResources' containers holding GPUs on this node, or None where it is not read."""
        if self.pod_resources is None:
            return None
        try:
            return self.pod_resources.list()
        except PodResourcesError as exc:
            raise KubeError(str(exc)) from None

    def _held_pods(self, gpu_pods: list[PodGpus] | None) -> set[str] | None:
        if gpu_pods is None:
            return None
        return {p.pod for p in gpu_pods if p.namespace == self.namespace}

    def _holders(self, gpu_pods: list[PodGpus] | None, hold_names: set[tuple[str, str]]
                 ) -> dict[str, Holder] | None:
        if gpu_pods is None:
            return None
        owners = Owners(self._akash_leases(), self.hyperbolic_namespaces,
                        self.local_namespaces, hold_names, AKASH_NAMESPACE)
        return gpu_holders(gpu_pods, owners)

    def _akash_leases(self) -> dict[str, str]:
        """Akash lease namespaces -> the lease id as sunrig's Akash adapter writes it."""
        doc = self._call("list Akash lease namespaces", self.api.list_namespace,
                         label_selector=AKASH_LEASE_LABELS[1])
        out = {}
        for ns in doc.items or []:
            labels = ns.metadata.labels or {}
            if all(labels.get(k) for k in AKASH_LEASE_LABELS):
                out[ns.metadata.name] = "/".join(labels[k] for k in AKASH_LEASE_LABELS)
        return out

    def _ensure_priority_class(self) -> None:
        if self._class_ready:
            return
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException
        sched = client.SchedulingV1Api(self.api.api_client)
        body = client.V1PriorityClass(
            metadata=client.V1ObjectMeta(name=PRIORITY_CLASS, labels=dict(LABELS)),
            value=PRIORITY_VALUE, preemption_policy="Never", global_default=False,
            description="sunrig's hold pods: GPUs the owner keeps off the market; tenants' "
                        "pods cannot preempt them, and they never preempt a tenant")
        try:
            sched.create_priority_class(body, _request_timeout=self.timeout_s)
        except ApiException as exc:
            if exc.status != 409:  # 409: it exists already, from an earlier start
                raise KubeError(f"kubernetes: create priority class {PRIORITY_CLASS}: HTTP "
                                f"{exc.status} {exc.reason}") from None
        except (HTTPError, OSError) as exc:
            raise KubeError(f"kubernetes: create priority class {PRIORITY_CLASS}: {exc}"
                            ) from None
        self._class_ready = True

    def _pods(self) -> list:
        doc = self._call("list pods", self.api.list_namespaced_pod, self.namespace,
                         label_selector=ROLE, field_selector=f"spec.nodeName={self.node_name}")
        return list(doc.items or [])

    def _delete(self, name: str) -> None:
        self._call("delete hold pod " + name, self.api.delete_namespaced_pod, name,
                   self.namespace, grace_period_seconds=0)

    def _hold_pod(self, name: str) -> client.V1Pod:
        from kubernetes import client
        return client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, namespace=self.namespace,
                                         labels={ROLE: HOLD, **LABELS}),
            spec=client.V1PodSpec(
                node_name=self.node_name, restart_policy="Always",
                termination_grace_period_seconds=0, priority_class_name=PRIORITY_CLASS,
                containers=[client.V1Container(
                    name="hold", image=self.image,
                    resources=client.V1ResourceRequirements(limits={GPU: "1"},
                                                            requests={GPU: "1"}))]))

    def _call(self, what: str, fn, *args, **kwargs):
        return call_api(what, self.namespace, self.timeout_s, fn, *args, **kwargs)


def call_api(what: str, where: str, timeout_s: float, fn, *args, **kwargs):
    """One API call; failures become a KubeError naming the call (never the credentials)."""
    from kubernetes.client.exceptions import ApiException
    try:
        return fn(*args, _request_timeout=timeout_s, **kwargs)
    except ApiException as exc:
        if exc.status == 404 and what.startswith("delete"):
            return None  # already gone: what we wanted
        raise KubeError(f"kubernetes: {what} in {where}: HTTP {exc.status} "
                        f"{exc.reason}") from None
    except (HTTPError, OSError) as exc:
        raise KubeError(f"kubernetes: {what} in {where}: {exc}") from None


def gpus_off_market(total_gpus: int, planned: Mapping[str, int], leased: Mapping[str, int]
                    ) -> int:
    """GPUs to keep from both markets on Kubernetes (local pods and hold pods) so that each
    market gets its share and no more, as far as Kubernetes can tell them apart.

    A free GPU on the node is free to both providers: Akash's inventory and Hyper-dOS's rental
    pods (default scheduler, pinned by kubernetes.io/hostname) see the same allocatable GPUs,
    and no label or taint splits one node's GPUs between them. Akash is held to its share by
    its bid script (market_adapter/akash_bid.py AkashShare), Hyperbolic only by what is free.
    So the node leaves free the largest unleased share, not their sum: Hyperbolic can never
    take more than the plan gives the markets together, and goes beyond its own share only
    into Akash's unsold GPUs, and only when Akash's unleased share is the larger."""
    markets = set(planned) | set(leased)
    in_leases = sum(leased.get(m, 0) for m in markets)
    free = max((planned.get(m, 0) - leased.get(m, 0) for m in markets), default=0)
    return max(0, total_gpus - in_leases - max(0, free))


def remove_all(api: client.CoreV1Api, namespace: str, timeout_s: float = 10.0) -> int:
    """Delete everything sunrig created (its hold pods and its PriorityClass), by its label;
    the owner's own pods stay. Returns how many objects went. Used on uninstall."""
    from kubernetes import client
    selector = f"{MANAGED_BY}={SUNRIG}"
    pods = call_api("list sunrig's pods", namespace, timeout_s, api.list_namespaced_pod,
                    namespace, label_selector=selector)
    gone = 0
    for pod in pods.items or []:
        call_api("delete pod " + pod.metadata.name, namespace, timeout_s,
                 api.delete_namespaced_pod, pod.metadata.name, namespace, grace_period_seconds=0)
        gone += 1
    sched = client.SchedulingV1Api(api.api_client)
    classes = call_api("list sunrig's priority classes", "the cluster", timeout_s,
                       sched.list_priority_class, label_selector=selector)
    for pc in classes.items or []:
        call_api("delete priority class " + pc.metadata.name, "the cluster", timeout_s,
                 sched.delete_priority_class, pc.metadata.name)
        gone += 1
    return gone


def _role(pod) -> str | None:
    return (pod.metadata.labels or {}).get(ROLE)


def _deleting(pod) -> bool:
    return pod.metadata.deletion_timestamp is not None


def _running(pod) -> bool:
    phase = pod.status.phase if pod.status else None
    return not _deleting(pod) and phase not in ("Succeeded", "Failed")


def _local_gpus(pods: list) -> int:
    return sum(_gpus(p) for p in pods if _role(p) == LOCAL and _running(p))


def _why(phase: str | None, status) -> str:
    """The API's own reason for a pod's state, shortened: it goes into logs and events."""
    reason = getattr(status, "reason", None) if status else None
    message = getattr(status, "message", None) if status else None
    for cond in (getattr(status, "conditions", None) or []) if status else []:
        if cond.type == "PodScheduled" and cond.status == "False":
            reason, message = reason or cond.reason, message or cond.message
    text = " ".join(str(t) for t in (phase, reason and f"({reason})", message) if t)
    return text[:REASON_CHARS] or "no reason given"


def _age_text(age_s: float | None) -> str:
    return "an unknown time" if age_s is None else f"{age_s:.0f} s"


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
    from kubernetes import client
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


def uninstall(config_path: str) -> int:
    """`python -m node.cluster.kube CONFIG`, run by install.sh --uninstall: remove what sunrig
    created on the rig's Kubernetes when the config has [kube] enabled; exit 0 when nothing was
    left."""
    from node.config import load_config
    cfg = load_config(config_path).kube
    if not cfg.enabled:
        print("kube: not enabled in the config; nothing to remove")
        return 0
    try:
        gone = remove_all(api_client(cfg.kubeconfig or None), cfg.namespace)
    except KubeError as exc:
        print(f"kube: could not remove sunrig's pods and priority class: {exc}", file=sys.stderr)
        return 1
    print(f"kube: removed {gone} objects sunrig had created")
    return 0


if __name__ == "__main__":
    sys.exit(uninstall(sys.argv[1]))
