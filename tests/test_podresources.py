"""Which pod holds which GPU, read from a real gRPC server built from the kubelet's proto."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import grpc
import pytest

from node.cluster.kube import AKASH_NAMESPACE
from node.cluster.podresources import (
    AKASH,
    HOLD,
    HYPERBOLIC,
    LOCAL,
    OTHER,
    Holder,
    Owners,
    PodGpus,
    PodResources,
    PodResourcesError,
    access_problem,
    gpu_holders,
    parent_gpu,
    physical,
)
from node.roles import Physical
from tests.conftest import HANG_S
from tests.kube_fake import FakeKubelet

RECORDED = json.loads((Path(__file__).parent / "data" / "kube" /
                       "podresources_list.json").read_text())
LEASE_NS = "q9f6b2s34hmde3vje8r9o44420t83aa0u6k2s1fcv4noe"


def uuid(i: int) -> str:
    return f"GPU-5e0a0007-{i:04x}-4000-8000-{i:012x}"


@pytest.fixture
def kubelet(tmp_path):
    fake = FakeKubelet(str(tmp_path / "kubelet.sock"))
    fake.pod_resources = copy.deepcopy(RECORDED["pod_resources"])
    fake.devices = [{"resource_name": "nvidia.com/gpu", "device_ids": [uuid(i)]}
                    for i in range(8)]
    yield fake
    fake.close()


def client(kubelet: FakeKubelet) -> PodResources:
    return PodResources(kubelet.socket_path, timeout_s=HANG_S)


def owners(**kw) -> Owners:
    base = dict(akash_leases={LEASE_NS: "akash1owner/123/1/1"},
                hyperbolic_namespaces=("instance", "hyperpool"), local_namespaces=("sunrig",),
                hold_pods={("sunrig", "sunrig-hold-0")}, akash_shape=AKASH_NAMESPACE)
    return Owners(**{**base, **kw})


def test_list_tells_which_container_holds_which_gpu(kubelet):
    pods = client(kubelet).list()
    assert pods == [
        PodGpus("sunrig", "vllm-llama-70b-7d9f8c6b5-x2k4q", "vllm", (uuid(0), uuid(1))),
        PodGpus(LEASE_NS, "web-6c8f9d7b4-m2x8z", "web", (uuid(4), uuid(5))),
        PodGpus("instance", "instance-7f6d5c4b3-q9w8e", "instance", (uuid(7),)),
    ]  # containers without GPUs (the sidecar, dcgm-exporter, CPU-pinned pods) are left out


def test_allocatable_lists_the_node_gpus(kubelet):
    kubelet.devices.append({"resource_name": "example.com/fpga", "device_ids": ["fpga-0"]})
    assert client(kubelet).allocatable() == tuple(uuid(i) for i in range(8))


def test_each_gpu_is_its_holders_by_namespace(kubelet):
    kubelet.hold("sunrig", "sunrig-hold-0", [uuid(2)], container="hold")
    kubelet.hold("ml-team", "notebook-0", [uuid(3)])
    held = gpu_holders(client(kubelet).list(), owners())
    assert held == {
        uuid(0): Holder(LOCAL, "sunrig", "vllm-llama-70b-7d9f8c6b5-x2k4q"),
        uuid(1): Holder(LOCAL, "sunrig", "vllm-llama-70b-7d9f8c6b5-x2k4q"),
        uuid(2): Holder(HOLD, "sunrig", "sunrig-hold-0"),
        uuid(3): Holder(OTHER, "ml-team", "notebook-0"),
        uuid(4): Holder(AKASH, LEASE_NS, "web-6c8f9d7b4-m2x8z", "akash1owner/123/1/1"),
        uuid(5): Holder(AKASH, LEASE_NS, "web-6c8f9d7b4-m2x8z", "akash1owner/123/1/1"),
        uuid(7): Holder(HYPERBOLIC, "instance", "instance-7f6d5c4b3-q9w8e"),
    }
    # without the namespace's labels, its shape still says Akash (no lease id then)
    unlabelled = gpu_holders(client(kubelet).list(), owners(akash_leases={}))
    assert unlabelled[uuid(4)] == Holder(AKASH, LEASE_NS, "web-6c8f9d7b4-m2x8z")


def test_roles_take_the_holders_by_gpu_index(kubelet):
    kubelet.hold("sunrig", "sunrig-hold-0", [uuid(2)])
    kubelet.hold("ml-team", "notebook-0", [uuid(3)])
    held = gpu_holders(client(kubelet).list(), owners())
    index = {uuid(i): i for i in range(8)}
    assert physical(held, index) == Physical(
        tenant={4: ("akash", "akash1owner/123/1/1"), 5: ("akash", "akash1owner/123/1/1"),
                7: ("hyperbolic", "instance/instance-7f6d5c4b3-q9w8e")},
        local=frozenset({0, 1, 3}), hold=frozenset({2}))


def test_mig_devices_count_for_their_parent_gpu():
    assert parent_gpu(f"MIG-{uuid(3)}/1/0") == uuid(3)  # older plugins name the parent
    assert parent_gpu("MIG-4d0d5e7a-1111-5b2c-9f7e-0a1b2c3d4e5f") is None  # needs NVML
    assert parent_gpu("MIG-4d0d5e7a-1111-5b2c-9f7e-0a1b2c3d4e5f",
                      {"MIG-4d0d5e7a-1111-5b2c-9f7e-0a1b2c3d4e5f": uuid(6)}) == uuid(6)
    # slices of one GPU held by the owner and by a lease: the GPU is the lease's, never capped
    pods = [PodGpus("sunrig", "small-llm", "llm", (f"MIG-{uuid(6)}/1/0",)),
            PodGpus(LEASE_NS, "web", "web", (f"MIG-{uuid(6)}/2/0",))]
    assert gpu_holders(pods, owners())[uuid(6)].kind == AKASH


@pytest.mark.parametrize("device_id", [
    "", "0", "gpu0", "MIG-", "MIG-GPU-", "GPU", "nvidia0", "MIG-unknown/1/0",
    "../../etc/passwd", "GPU-" + "f" * 300,
])
def test_a_device_id_of_no_gpu_nvml_shows_is_no_gpu_of_the_rig(kubelet, device_id):
    kubelet.pod_resources = [{"name": "web", "namespace": LEASE_NS, "containers": [
        {"name": "web", "devices": [{"resource_name": "nvidia.com/gpu",
                                     "device_ids": [device_id, uuid(1)]}]}]}]
    held = gpu_holders(client(kubelet).list(), owners())
    roles = physical(held, {uuid(i): i for i in range(8)})
    assert roles.tenant == {1: ("akash", "akash1owner/123/1/1")}  # the real GPU still counts
    assert not roles.local and not roles.hold


@pytest.mark.parametrize("code", [grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.PERMISSION_DENIED,
                                  grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL,
                                  grpc.StatusCode.RESOURCE_EXHAUSTED])
def test_a_refusing_kubelet_is_a_named_error_and_the_next_call_recovers(kubelet, code):
    kubelet.fail_next = [code]
    with pytest.raises(PodResourcesError, match=rf"kubelet.sock: List: {code.name}"):
        client(kubelet).list()
    assert len(client(kubelet).list()) == 3


def test_no_kubelet_socket_is_a_named_error(tmp_path):
    plain = tmp_path / "not-a-socket"
    plain.write_text("x")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (tmp_path / "missing.sock", plain, fifo, tmp_path):
        with pytest.raises(PodResourcesError, match=re.escape(f"{path}: List: UNAVAILABLE")):
            PodResources(str(path), timeout_s=HANG_S).list()


def as_user(uid: int, fn, *args) -> str:
    """What `fn(*args)` returns in a child process that has dropped to `uid` (and its group)."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop root, ask, report, leave at once
        try:
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            out = repr(fn(*args))
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which fails on it
            out = f"raised {exc!r}"
        os.write(write_fd, out.encode()[:4096])
        os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    with os.fdopen(read_fd, "rb") as fh:
        return fh.read().decode()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to ask as another user")
def test_a_user_the_kubelets_socket_shuts_out_is_told_why():
    nobody = 65534
    where = Path(tempfile.mkdtemp(prefix="pod-resources-"))  # under /tmp: others may pass
    kubelet = FakeKubelet(str(where / "kubelet.sock"))
    try:
        os.chmod(where, 0o750)  # as the kubelet makes its directory: root's, no one else enters
        assert f"uid {nobody}) may not enter {where}" in as_user(nobody, access_problem,
                                                                 kubelet.socket_path)
        os.chmod(where, 0o755)  # let it in: the socket itself shuts it out
        os.chmod(kubelet.socket_path, 0o755)  # the kubelet's umask: only root may write
        assert "may not write the socket" in as_user(nobody, access_problem,
                                                     kubelet.socket_path)
        assert access_problem(kubelet.socket_path) is None  # root may
        assert client(kubelet).list() == []
    finally:
        kubelet.close()
        shutil.rmtree(where)
