"""Which pod holds which GPU: the kubelet's PodResources API, and whose each GPU is.

The kubelet serves `v1.PodResourcesLister` (GA since Kubernetes 1.28) on a unix socket,
/var/lib/kubelet/pod-resources/kubelet.sock; NVIDIA's dcgm-exporter reads the same `List` to
tell which pod runs on which GPU. For `nvidia.com/gpu` the device plugin's device ids are GPU
UUIDs, the ones NVML reports; MIG devices are `MIG-GPU-<uuid>/<gi>/<ci>` (older plugins) or
`MIG-<uuid>` (newer), and only the first names its parent GPU.

Whose a GPU is follows from the pod's namespace, as PodResources carries no labels:
- Akash: the provider runs each lease in its own namespace, named by a hash of the lease id and
  labelled with the lease's owner, dseq, gseq and oseq (akash-network/provider,
  cluster/kube/builder/builder.go `LidNS`, `AppendLeaseLabels`; cluster/kube/builder/
  namespace.go); the caller reads those namespaces' labels from the API server.
- Hyperbolic: HyperdOS's rental chart puts its pods in the `instance` namespace and its GPU
  filler in `hyperpool` (HyperbolicLabs/Hyper-dOS, gitapps/buffalo/instance/templates/
  configmap.yaml, install.bash `kubectl create namespace instance`, metadeployment/templates/
  buffalo/hyperpool.yaml).
- sunrig's hold pods (by name, from the API server) and the owner's local pods (namespaces set
  in [kube]).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

import grpc

from node.cluster.podresources_pb import api_pb2, api_pb2_grpc
from node.roles import Physical

log = logging.getLogger("sunrig.podresources")

KUBELET_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
GPU_RESOURCE = "nvidia.com/gpu"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"
AKASH, HYPERBOLIC, HOLD, LOCAL, OTHER = "akash", "hyperbolic", "hold", "local", "other"


class PodResourcesError(Exception):
    """The kubelet's PodResources API could not be reached or refused; the message names it."""


@dataclass(frozen=True)
class PodGpus:
    """One container's GPUs as the kubelet allocated them."""

    namespace: str
    pod: str
    container: str
    gpu_uuids: tuple[str, ...]


@dataclass(frozen=True)
class Holder:
    """Who holds a physical GPU: a market's tenant, a hold pod, the owner, or someone else.
    `lease_id` is the market's lease where the namespace tells it (Akash), else empty."""

    kind: str
    namespace: str
    pod: str
    lease_id: str = ""

    @property
    def pod_ref(self) -> str:
        return f"{self.namespace}/{self.pod}"


class PodResources:
    """A client of the kubelet's PodResources v1 API over its unix socket."""

    def __init__(self, socket_path: str = KUBELET_SOCKET, timeout_s: float = 5.0):
        self.socket_path, self.timeout_s = socket_path, timeout_s

    def list(self) -> list[PodGpus]:
        """Every container on the node that holds GPUs, with their UUIDs."""
        reply = self._call("List", api_pb2.ListPodResourcesRequest())
        out = []
        for pod in reply.pod_resources:
            for c in pod.containers:
                uuids = _gpu_ids(c.devices)
                if uuids:
                    out.append(PodGpus(pod.namespace, pod.name, c.name, uuids))
        return out

    def allocatable(self) -> tuple[str, ...]:
        """The GPUs the device plugin offers on the node (healthy ones), by device id."""
        reply = self._call("GetAllocatableResources", api_pb2.AllocatableResourcesRequest())
        return _gpu_ids(reply.devices)

    def _call(self, method: str, request):
        # a channel per call: the kubelet restarts, and a kept channel would point at its
        # old socket; a call a minute costs nothing worth keeping one for
        try:
            with grpc.insecure_channel(f"unix://{self.socket_path}") as channel:
                stub = api_pb2_grpc.PodResourcesListerStub(channel)
                return getattr(stub, method)(request, timeout=self.timeout_s)
        except grpc.RpcError as exc:
            code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
            hint = access_problem(self.socket_path) if code == "UNAVAILABLE" else None
            raise PodResourcesError(f"kubelet pod resources at {self.socket_path}: {method}: "
                                    f"{code} {_detail(exc)}{'; ' + hint if hint else ''}"
                                    ) from None


def access_problem(socket_path: str) -> str | None:
    """Why this process may not talk to the kubelet's socket, where that is the reason. The
    kubelet makes the directory 0750 and the socket with its umask, both root's (kubernetes
    pkg/kubelet/util/util_unix.go CreateListener), and connecting to a unix socket needs write
    permission on it (unix(7)). dcgm-exporter reads it as root, in a pod with the directory
    mounted (its chart's securityContext runAsUser: 0); a host install of sunrig runs as its
    own user (README: Kubernetes access)."""
    parent = os.path.dirname(socket_path) or "."
    if not os.access(parent, os.X_OK):
        return f"this process (uid {os.geteuid()}) may not enter {parent}"
    if os.path.exists(socket_path) and not os.access(socket_path, os.W_OK):
        return (f"this process (uid {os.geteuid()}) may not write the socket, which it needs "
                "to connect: give the sunrig group access to it (README: Kubernetes access)")
    return None


def _detail(exc: grpc.RpcError) -> str:
    detail = exc.details() if hasattr(exc, "details") else ""
    return (detail or "")[:200]


def _gpu_ids(devices: Iterable) -> tuple[str, ...]:
    ids: list[str] = []
    for d in devices:
        if d.resource_name == GPU_RESOURCE or d.resource_name.startswith(MIG_RESOURCE_PREFIX):
            ids.extend(d.device_ids)
    return tuple(ids)


def parent_gpu(device_id: str, mig_parents: Mapping[str, str] | None = None) -> str | None:
    """The physical GPU's UUID behind a device id: a GPU UUID is itself; `MIG-GPU-<uuid>/gi/ci`
    names its parent; a bare `MIG-<uuid>` needs NVML's answer (`mig_parents`)."""
    if device_id.startswith("GPU-"):
        return device_id
    if device_id.startswith("MIG-GPU-"):
        return device_id.removeprefix("MIG-").split("/", 1)[0]
    return (mig_parents or {}).get(device_id)


@dataclass(frozen=True)
class Owners:
    """How namespaces and pods map to whose a GPU is; see the module's docstring."""

    akash_leases: Mapping[str, str]  # lease namespace -> sunrig's Akash lease id
    hyperbolic_namespaces: Collection[str]
    local_namespaces: Collection[str]
    hold_pods: Collection[tuple[str, str]]  # (namespace, name) of sunrig's hold pods
    akash_shape: re.Pattern | None = None  # a lease namespace's name, where labels are unread

    def holder(self, namespace: str, pod: str) -> Holder:
        if namespace in self.akash_leases:
            return Holder(AKASH, namespace, pod, self.akash_leases[namespace])
        if self.akash_shape is not None and self.akash_shape.fullmatch(namespace):
            return Holder(AKASH, namespace, pod)
        if namespace in self.hyperbolic_namespaces:
            return Holder(HYPERBOLIC, namespace, pod)
        if (namespace, pod) in self.hold_pods:
            return Holder(HOLD, namespace, pod)
        if namespace in self.local_namespaces:
            return Holder(LOCAL, namespace, pod)
        return Holder(OTHER, namespace, pod)


def gpu_holders(pods: Iterable[PodGpus], owners: Owners,
                mig_parents: Mapping[str, str] | None = None) -> dict[str, Holder]:
    """Physical GPU UUID -> who holds it. A GPU shared by MIG slices of several pods goes to
    the first tenant among them: a GPU any lease runs on is that lease's, never capped."""
    out: dict[str, Holder] = {}
    unknown: list[str] = []
    for p in pods:
        holder = owners.holder(p.namespace, p.pod)
        for device_id in p.gpu_uuids:
            uuid = parent_gpu(device_id, mig_parents)
            if uuid is None:
                unknown.append(device_id)
                continue
            if uuid not in out or (_is_tenant(holder) and not _is_tenant(out[uuid])):
                out[uuid] = holder
    if unknown:
        log.debug("MIG devices without a known parent GPU: %s", ", ".join(sorted(unknown)))
    return out


def _is_tenant(holder: Holder) -> bool:
    return holder.kind in (AKASH, HYPERBOLIC)


def physical(holders: Mapping[str, Holder], index_by_uuid: Mapping[str, int]) -> Physical:
    """The holders as roles take them, by GPU index: tenants by market (with the lease, else
    the pod), hold pods, and the owner's (any pod of no market is the owner's cluster's)."""
    tenant: dict[int, tuple[str, str]] = {}
    local, hold = set(), set()
    for uuid, h in holders.items():
        i = index_by_uuid.get(uuid)
        if i is None:
            continue  # a GPU NVML does not show (yet): nothing to assign
        if _is_tenant(h):
            tenant[i] = (h.kind, h.lease_id or h.pod_ref)
        elif h.kind == HOLD:
            hold.add(i)
        else:
            local.add(i)
    return Physical(tenant, frozenset(local), frozenset(hold))
