"""The GPU split on Kubernetes through the official client, against an in-process API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from node.kube import GPU, HOLD, ROLE, KubeError, KubeSplit, api_client
from tests.conftest import HANG_S
from tests.kube_fake import FakeKube

LOCAL_POD = json.loads((Path(__file__).parent / "data" / "kube" / "local_pod.json").read_text())


@pytest.fixture
def kube():
    fake = FakeKube()
    fake.add(LOCAL_POD)  # the owner's vLLM with 2 GPUs, as the API server lists it
    yield fake
    fake.close()


def split(kube: FakeKube) -> KubeSplit:
    # the in-process API answers at once when it gets the CPU; the timeout only ends a hang
    return KubeSplit(api_client(host=kube.url), "sunrig", "hgx-01", timeout_s=HANG_S)


def holds(kube: FakeKube) -> list[dict]:
    return [p for p in kube.pods.values() if p["metadata"]["labels"].get(ROLE) == HOLD]


def test_hold_pods_make_up_what_local_inference_does_not_use(kube):
    s = split(kube)
    assert s.current().local_gpus_in_use == 2
    result = s.keep(5)  # 5 GPUs off the market: 2 in local inference, 3 hold pods
    assert (result.local_gpus_in_use, result.hold_gpus) == (2, 3)
    pods = holds(kube)
    assert len(pods) == 3
    for pod in pods:
        c = pod["spec"]["containers"][0]
        assert c["resources"]["requests"][GPU] == "1" and c["resources"]["limits"][GPU] == "1"
        assert pod["spec"]["nodeName"] == "hgx-01"
    assert s.current().kept_gpus == 5


def test_resizing_deletes_hold_pods_but_never_local_inference(kube):
    s = split(kube)
    s.keep(6)
    assert s.keep(3).hold_gpus == 1
    assert s.keep(0).hold_gpus == 0  # below local inference: local pods stay
    assert ("sunrig", LOCAL_POD["metadata"]["name"]) in kube.pods
    assert holds(kube) == []
    before = len(kube.calls)
    s.keep(2)  # already right: one list call, nothing created or deleted
    assert kube.calls[before:] == ["GET /api/v1/namespaces/sunrig/pods"]


def test_api_failures_are_named_and_the_next_call_repairs(kube):
    s = split(kube)
    kube.fail_next = [500]
    with pytest.raises(KubeError, match="list pods in sunrig: HTTP 500"):
        s.keep(4)
    s.keep(4)
    assert len(holds(kube)) == 2
    kube.close()
    with pytest.raises(KubeError, match="list pods"):
        s.keep(1)


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
