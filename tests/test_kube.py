"""The GPU split on Kubernetes through the official client, against an in-process API and a
real gRPC PodResources server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.cluster.kube import (
    GPU,
    HOLD,
    MANAGED_BY,
    PRIORITY_CLASS,
    PRIORITY_VALUE,
    ROLE,
    KubeError,
    KubeSplit,
    api_client,
    remove_all,
)
from node.cluster.podresources import PodResources
from node.config import load_config
from node.errors import ConfigError
from tests.conftest import HANG_S
from tests.kube_fake import FakeKube, FakeKubelet, write_kubeconfig

DATA = Path(__file__).parent / "data" / "kube"
LOCAL_POD = json.loads((DATA / "local_pod.json").read_text())
LEASE_NS = "q9f6b2s34hmde3vje8r9o44420t83aa0u6k2s1fcv4noe"


def uuid(i: int) -> str:
    return f"GPU-5e0a0007-{i:04x}-4000-8000-{i:012x}"


@pytest.fixture
def kube():
    fake = FakeKube()
    fake.add(json.loads(json.dumps(LOCAL_POD)))  # the owner's vLLM with 2 GPUs
    fake.add_namespace(LEASE_NS, {"akash.network": "true",
                                  "akash.network/lease.id.owner": "akash1owner",
                                  "akash.network/lease.id.dseq": "123",
                                  "akash.network/lease.id.gseq": "1",
                                  "akash.network/lease.id.oseq": "1",
                                  "akash.network/lease.id.provider": "akash1provider"})
    yield fake
    fake.close()


@pytest.fixture
def kubelet(tmp_path):
    fake = FakeKubelet(str(tmp_path / "kubelet.sock"))
    fake.hold("sunrig", LOCAL_POD["metadata"]["name"], [uuid(0), uuid(1)], container="vllm")
    yield fake
    fake.close()


def split(kube: FakeKube, kubelet: FakeKubelet | None = None, grace_s: float = 300.0
          ) -> KubeSplit:
    # the in-process API answers at once when it gets the CPU; the timeout only ends a hang
    pods = PodResources(kubelet.socket_path, timeout_s=HANG_S) if kubelet else None
    return KubeSplit(api_client(host=kube.url), "sunrig", "hgx-01", timeout_s=HANG_S,
                     pod_resources=pods, grace_s=grace_s)


def holds(kube: FakeKube) -> list[dict]:
    return [p for p in kube.pods.values() if p["metadata"]["labels"].get(ROLE) == HOLD]


def start_holds(kube: FakeKube, kubelet: FakeKubelet | None = None, first_gpu: int = 2) -> None:
    """The scheduler and kubelet start every hold pod, each on a GPU of its own."""
    for n, pod in enumerate(sorted(holds(kube), key=lambda p: p["metadata"]["name"])):
        name = pod["metadata"]["name"]
        kube.set_phase("sunrig", name, "Running")
        if kubelet is not None:
            kubelet.release("sunrig", name)
            kubelet.hold("sunrig", name, [uuid(first_gpu + n)], container="hold")


def test_hold_pods_make_up_what_local_inference_does_not_use(kube):
    s = split(kube)
    assert s.current().local_gpus_in_use == 2
    result = s.keep(5)  # 5 GPUs off the market: 2 in local inference, 3 hold pods
    assert (result.local_gpus_in_use, result.hold_gpus, result.starting) == (2, 0, 3)
    pods = holds(kube)
    assert len(pods) == 3
    for pod in pods:
        c = pod["spec"]["containers"][0]
        assert c["resources"]["requests"][GPU] == "1" and c["resources"]["limits"][GPU] == "1"
        assert pod["spec"]["nodeName"] == "hgx-01"
        assert pod["metadata"]["labels"][MANAGED_BY] == "sunrig"
    start_holds(kube)
    assert s.current().kept_gpus == 5
    assert s.keep(5).hold_gpus == 3


def test_hold_pods_run_in_a_class_tenants_cannot_preempt(kube):
    s = split(kube)
    s.keep(4)
    s.keep(4)
    pc = kube.classes[PRIORITY_CLASS]
    assert pc["value"] == PRIORITY_VALUE > 0  # above the tenants' pods, which set no class
    assert pc["preemptionPolicy"] == "Never"  # and a hold pod never evicts a running lease
    assert pc["metadata"]["labels"][MANAGED_BY] == "sunrig" and not pc.get("globalDefault")
    for pod in holds(kube):  # the API server's admission gave each its class's priority
        assert pod["spec"]["priority"] == PRIORITY_VALUE
    assert kube.calls.count("POST /apis/scheduling.k8s.io/v1/priorityclasses") == 1
    again = split(kube)  # a restart finds the class already there (409) and carries on
    again.keep(4)
    assert len(kube.classes) == 1


def test_resizing_deletes_hold_pods_but_never_local_inference(kube):
    s = split(kube)
    s.keep(6)
    start_holds(kube)
    assert s.keep(3).hold_gpus == 1
    assert s.keep(0).hold_gpus == 0  # below local inference: local pods stay
    assert ("sunrig", LOCAL_POD["metadata"]["name"]) in kube.pods
    assert holds(kube) == []
    s.keep(2)
    before = len(kube.calls)
    s.keep(2)  # already right: one list call, nothing created or deleted
    assert kube.calls[before:] == ["GET /api/v1/namespaces/sunrig/pods"]


def test_a_hold_pod_counts_only_while_the_kubelet_shows_it_holding_a_gpu(kube, kubelet):
    s = split(kube, kubelet)
    s.keep(4)
    for pod in holds(kube):
        kube.set_phase("sunrig", pod["metadata"]["name"], "Running")
    result = s.keep(4)  # Running, but the device plugin gave them nothing yet
    assert (result.hold_gpus, result.starting, result.replaced) == (0, 2, ())
    start_holds(kube, kubelet)
    result = s.keep(4)
    assert (result.hold_gpus, result.starting) == (2, 0)
    assert {h.kind for h in result.holders.values()} == {"local", "hold"}


@pytest.mark.parametrize(("phase", "reason", "message", "conditions"), [
    ("Failed", "UnexpectedAdmissionError", "Allocate failed due to requested number of devices "
     "unavailable for nvidia.com/gpu. Requested: 1, Available: 0", None),
    ("Failed", "Evicted", "The node was low on resource: memory.", None),
    ("Failed", "OutOfnvidia.com/gpu", "Pod was rejected: Node didn't have enough resource", None),
    ("Failed", "Preempting", "Preempted in order to admit critical pod", None),
    ("Succeeded", None, None, None),
    ("Pending", None, None, [{"type": "PodScheduled", "status": "False",
                              "reason": "Unschedulable",
                              "message": "0/1 nodes are available: "
                                         "1 Insufficient nvidia.com/gpu."}]),
    ("Pending", None, None, None),  # never scheduled, no word why
    ("Unknown", None, None, None),
    ("Running", None, None, None),  # Running past the grace, yet holding no GPU
])
def test_a_rejected_hold_pod_is_replaced_and_reported_once(kube, kubelet, tmp_path, phase,
                                                           reason, message, conditions):
    s = split(kube, kubelet, grace_s=60.0)
    s.keep(3)
    start_holds(kube, kubelet)
    assert s.keep(3).hold_gpus == 1
    bad = holds(kube)[0]["metadata"]["name"]
    kubelet.release("sunrig", bad)
    kube.set_phase("sunrig", bad, phase, reason, message, conditions)
    if phase not in ("Failed", "Succeeded"):
        assert s.keep(3).replaced == ()  # within the grace it is still starting
        kube.age("sunrig", bad, 61)
    result = s.keep(3)
    assert len(result.replaced) == 1 and bad in result.replaced[0]
    assert phase in result.replaced[0] and (reason or "") in result.replaced[0]
    assert ("sunrig", bad) not in kube.pods
    (new,) = holds(kube)
    assert new["metadata"]["name"] != bad and new["status"]["phase"] == "Pending"
    assert s.keep(3).replaced == ()  # reported once: the pod is gone


def test_remove_all_takes_away_what_sunrig_made_and_nothing_else(kube):
    s = split(kube)
    s.keep(5)
    tenant = json.loads(json.dumps(LOCAL_POD))
    tenant["metadata"].update(name="web-0", namespace=LEASE_NS)
    kube.add(tenant)
    assert remove_all(api_client(host=kube.url), "sunrig", timeout_s=HANG_S) == 4
    assert holds(kube) == [] and kube.classes == {}
    assert ("sunrig", LOCAL_POD["metadata"]["name"]) in kube.pods
    assert (LEASE_NS, "web-0") in kube.pods
    assert remove_all(api_client(host=kube.url), "sunrig", timeout_s=HANG_S) == 0


def test_uninstall_removes_what_sunrig_made_through_the_owners_kubeconfig(kube, tmp_path):
    from node.cluster.kube import uninstall
    split(kube).keep(5)
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url)
    cfg = tmp_path / "sunrig.toml"
    cfg.write_text(f"[kube]\nenabled = true\nnode_name = 'rig'\nkubeconfig = '{kubeconfig}'\n")
    assert uninstall(str(cfg)) == 0
    assert holds(kube) == [] and kube.classes == {}
    off = tmp_path / "off.toml"
    off.write_text("[site]\nname = 'no kube'\n")
    assert uninstall(str(off)) == 0


def test_api_failures_are_named_and_the_next_call_repairs(kube):
    s = split(kube)
    kube.fail_next = [500]
    with pytest.raises(KubeError, match="create priority class sunrig-hold: HTTP 500"):
        s.keep(4)
    s.keep(4)  # the class, then the pods
    assert len(holds(kube)) == 2 and PRIORITY_CLASS in kube.classes
    kube.fail_next = [500]
    with pytest.raises(KubeError, match="list pods in sunrig: HTTP 500"):
        s.keep(5)
    s.keep(5)
    assert len(holds(kube)) == 3
    kube.close()
    with pytest.raises(KubeError, match="list pods"):
        s.keep(1)


def test_an_unreachable_kubelet_fails_the_pass_by_name(kube, kubelet):
    import grpc

    s = split(kube, kubelet)
    kubelet.fail_next = [grpc.StatusCode.PERMISSION_DENIED]
    with pytest.raises(KubeError, match="kubelet pod resources .*List: PERMISSION_DENIED"):
        s.keep(3)
    assert s.keep(3).holders is not None


@pytest.mark.parametrize(("key", "value"), [
    ("namespace", "'Sunrig'"), ("namespace", "'sun_rig'"), ("namespace", "'-sunrig'"),
    ("namespace", "'sunrig-'"), ("namespace", "''"), ("namespace", "'" + "a" * 64 + "'"),
    ("namespace", "'sun.rig'"), ("namespace", "'sun rig'"), ("namespace", "'süd'"),
    ("hyperbolic_namespaces", "['instance', 'Hyper_Pool']"),
    ("hyperbolic_namespaces", "['']"), ("local_namespaces", "['ml team']"),
    ("local_namespaces", "['a/b']"),
    ("node_name", "'HGX-01'"), ("node_name", "'hgx..01'"), ("node_name", "'-hgx'"),
    ("node_name", "'hgx_01'"), ("node_name", "'" + "a." * 127 + "a'"),
    ("node_name", "'hgx/01'"),
    ("hold_grace_s", "0"), ("hold_grace_s", "-5"), ("hold_grace_s", "1e9"),
    ("hold_grace_s", "nan"), ("hold_grace_s", "'soon'"),
])
def test_a_bad_kube_setting_is_refused_naming_its_key(tmp_path, key, value):
    path = tmp_path / "sunrig.toml"
    path.write_text(f"[kube]\nenabled = true\nnode_name = 'hgx-01'\n{key} = {value}\n"
                    .replace("node_name = 'hgx-01'\nnode_name", "node_name"))
    with pytest.raises(ConfigError, match=rf"kube\.{key}"):
        load_config(path)


def test_the_agent_holds_what_the_plan_does_not_offer(kube, tmp_path):
    from tests.conftest import make_agent, run_for

    agent, clock = make_agent(tmp_path)
    agent.parts.kube = split(kube)
    run_for(agent, clock, hours=1)
    slot = agent.state.plan.slot_at(clock.now())
    off_market = 8 - sum(slot.offered.values())
    assert agent.state.jobs["kube_split"].ok
    assert len(holds(kube)) == max(0, off_market - 2)  # the owner's vLLM holds 2 already
    kube.fail_next = [503]
    agent.run_job("kube_split")  # the API down: logged, the other jobs go on
    assert not agent.state.jobs["kube_split"].ok and agent.watchdog_ok()
    agent.store.close()


def test_roles_caps_and_energy_follow_the_gpus_tenants_really_hold(kube, kubelet, tmp_path):
    from node.roles import MARKET, PARKED
    from tests.conftest import make_agent, run_for

    agent, clock = make_agent(tmp_path)
    agent.parts.kube = split(kube, kubelet)
    # no plan yet: nothing is offered, so every GPU but the owner's is parked and capped
    run_for(agent, clock, hours=0.25, jobs=("sample_gpus", "kube_split", "apply_roles"))
    gpus = agent.state.gpus
    parked = [i for i, a in agent.state.assignments.items() if a.role == PARKED]
    capped = parked[-2:]  # a lease's pod now runs where the plan had parked (and capped) GPUs
    assert all(gpus[i].power_limit_w == gpus[i].power_limit_min_w for i in capped)
    kubelet.hold(LEASE_NS, "web-6c8f9d7b4-m2x8z", [gpus[i].uuid for i in capped], "web")
    agent.run_job("kube_split")
    for i in capped:
        assert agent.state.assignments[i].role == MARKET
        assert agent.state.assignments[i].lease_id == "akash1owner/123/1/1"
    run_for(agent, clock, hours=0.25, jobs=("sample_gpus", "kube_split", "apply_roles"))
    for i in capped:  # never capped while it holds a lease
        assert agent.state.gpus[i].power_limit_w == agent.state.gpus[i].power_limit_default_w
    rows = agent.store.query("SELECT role FROM gpu_samples WHERE uuid = ? ORDER BY ts DESC "
                             "LIMIT 3", [gpus[capped[0]].uuid])
    assert [r["role"] for r in rows] == [MARKET] * 3  # its energy is booked to the market
    agent.store.close()


def test_the_agent_replaces_a_rejected_hold_pod_and_says_so_once(kube, tmp_path):
    from tests.conftest import make_agent, run_for

    agent, clock = make_agent(tmp_path)
    agent.parts.kube = split(kube)
    run_for(agent, clock, hours=0.25, jobs=("sample_gpus", "kube_split", "apply_roles"))
    start_holds(kube)
    bad = holds(kube)[0]["metadata"]["name"]
    kube.set_phase("sunrig", bad, "Failed", "UnexpectedAdmissionError",
                   "Allocate failed due to requested number of devices unavailable")
    agent.run_job("kube_split")
    agent.run_job("kube_split")
    said = [e for e in agent.store.events(200) if e["kind"] == "kube"]
    assert len(said) == 1 and bad in said[0]["message"]
    assert "UnexpectedAdmissionError" in said[0]["message"]
    assert ("sunrig", bad) not in kube.pods and holds(kube)
    agent.store.close()

