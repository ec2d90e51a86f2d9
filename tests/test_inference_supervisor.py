"""The supervisor with real child processes: a small HTTP server the test writes stands in for
an inference server (it answers the OpenAI chat shape and says which GPUs it was given), and a
fake clock drives the backoff."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from conftest import wait_until

from node.clock import SimulatedClock
from node.config import InferenceConfig, InferenceServerConfig
from node.inference.runtime import LocalInference
from node.inference.supervisor import BACKOFF_MAX_S, ManagedServer, Supervisor
from node.inference.users import add_user
from node.storage.store import Store

ROOT = Path(__file__).resolve().parent.parent

# Answers GET /v1/models (its health path) and POST /v1/chat/completions; a request whose last
# message says "hold" is answered only once the release file exists. Every answer names the
# server's pid and its CUDA_VISIBLE_DEVICES.
SERVER = r'''
import json, os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
port, release = int(sys.argv[1]), sys.argv[2]
ME = {"pid": os.getpid(), "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def send(self, value):
        data = json.dumps(value).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        self.send({"object": "list", "data": [{"id": "m", "object": "model"}], **ME})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if body["messages"][-1]["content"] == "hold":
            while not os.path.exists(release):
                time.sleep(0.02)
        self.send({"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                   "choices": [{"index": 0, "finish_reason": "stop", "message": {
                       "role": "assistant", "content": json.dumps(ME)}}],
                   "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})

ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
'''


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def server_config(tmp: Path, gpus: int = 1, argv: list[str] | None = None
                  ) -> InferenceServerConfig:
    script = tmp / "server.py"
    script.write_text(SERVER)
    args = argv or [sys.executable, str(script), "{port}", str(tmp / "release")]
    return InferenceServerConfig(model="m", preset="command", args=tuple(args), gpus=gpus)


def test_a_server_that_exits_at_once_is_restarted_after_delays_that_double_up_to_the_limit():
    clock = FakeClock()
    config = InferenceServerConfig(model="m", preset="command", gpus=0, args=(
        sys.executable, "-c", "import sys; sys.exit(3)"))
    server = ManagedServer(config, 1.0, threading.Event(), clock=clock)
    delays, pids = [], set()
    for _ in range(9):
        server.step()  # due: starts a real process
        assert server.proc is not None
        pids.add(server.proc.pid)
        server.proc.wait()
        server.step()  # notices the exit and schedules the next start
        assert server.proc is None and server.last_exit == 3
        delays.append(server.next_start - clock.now_s)
        clock.now_s += delays[-1] / 2
        server.step()  # not yet due: nothing starts
        assert server.proc is None
        clock.now_s = server.next_start
    assert delays == [1, 2, 4, 8, 16, 32, BACKOFF_MAX_S, BACKOFF_MAX_S, BACKOFF_MAX_S]
    assert len(pids) == 9 and server.restarts == 9


@pytest.fixture
def local(tmp_path):
    store = Store(tmp_path / "store.db", "Europe/Amsterdam")
    cfg = InferenceConfig(enabled=True, port=0, drain_s=120.0,
                          servers=(server_config(tmp_path),))
    inference = LocalInference(cfg, store, SimulatedClock(datetime(2024, 6, 10, tzinfo=UTC),
                                                          1.0))
    yield inference, store, tmp_path
    inference.stop()
    store.close()


def started(inference: LocalInference, drain_s: float) -> tuple[httpx.Client, str]:
    inference.supervisor.servers[0].drain_s = drain_s
    inference.start()
    key = add_user(inference.store, "ann", datetime.now(UTC))
    client = httpx.Client(base_url=f"http://127.0.0.1:{inference.gateway.port}/v1",
                          headers={"Authorization": f"Bearer {key}"}, timeout=300)
    return client, key


def ask(client: httpx.Client, content: str) -> httpx.Response:
    return client.post("/chat/completions", json={
        "model": "m", "messages": [{"role": "user", "content": content}]})


def served_by(answer: httpx.Response) -> dict:
    return json.loads(answer.json()["choices"][0]["message"]["content"])


def ready_on(inference: LocalInference, cuda: str):
    server = inference.supervisor.servers[0]
    return server.backend.ready and server.server.gpu_uuids == tuple(cuda.split(","))


def held_request(inference: LocalInference, client: httpx.Client
                 ) -> tuple[threading.Thread, list[httpx.Response]]:
    """A request the server holds (until the release file exists), once it is in flight."""
    answers: list[httpx.Response] = []
    held = threading.Thread(target=lambda: answers.append(ask(client, "hold")))
    held.start()
    backend = inference.supervisor.servers[0].backend
    wait_until(lambda: backend.inflight == 1, "the held request in flight")
    return held, answers


def test_a_request_in_flight_completes_on_its_server_before_the_server_moves(local):
    inference, _, tmp = local
    client, _ = started(inference, drain_s=120.0)
    inference.set_gpus(["GPU-a"], [])
    wait_until(lambda: ready_on(inference, "GPU-a"), "the server ready on GPU-a")
    before = served_by(ask(client, "hi"))
    held, answers = held_request(inference, client)
    inference.set_gpus(["GPU-b"], [])
    wait_until(lambda: inference.supervisor.servers[0].backend.draining, "the drain")
    refused = ask(client, "hi")
    assert refused.status_code == 503  # no new request while it drains
    assert inference.supervisor.servers[0].proc.pid == before["pid"]  # not stopped mid-answer
    (tmp / "release").touch()
    held.join()
    assert answers[0].status_code == 200
    assert served_by(answers[0]) == before  # answered in full by the server on GPU-a
    wait_until(lambda: ready_on(inference, "GPU-b"), "the server ready on GPU-b")
    after = served_by(ask(client, "hi"))
    assert after["cuda"] == "GPU-b" and after["pid"] != before["pid"]


def test_a_drain_ends_at_its_bound_when_a_request_never_finishes(local):
    inference, _, _ = local
    client, _ = started(inference, drain_s=0.2)
    inference.set_gpus(["GPU-a"], [])
    wait_until(lambda: ready_on(inference, "GPU-a"), "the server ready on GPU-a")
    held, answers = held_request(inference, client)
    inference.set_gpus(["GPU-b"], [])
    # the held request is never released: the move happens anyway, once the bound has passed
    wait_until(lambda: ready_on(inference, "GPU-b"), "the server ready on GPU-b")
    held.join()
    assert answers[0].status_code == 502  # its server was stopped under it: an error, no hang
    assert served_by(ask(client, "hi"))["cuda"] == "GPU-b"


def test_a_leased_gpu_never_reaches_a_servers_cuda_visible_devices(local):
    inference, _, _ = local
    client, _ = started(inference, drain_s=1.0)
    # the reservation names GPU-a, but a lease holds it: the server gets GPU-b
    inference.set_gpus(["GPU-a", "GPU-b"], ["GPU-a"])
    wait_until(lambda: ready_on(inference, "GPU-b"), "the server ready on GPU-b")
    assert served_by(ask(client, "hi"))["cuda"] == "GPU-b"
    # every local GPU leased: the server waits for GPUs and answers 503, never starts on one
    inference.set_gpus(["GPU-b"], ["GPU-b"])
    server = inference.supervisor.servers[0]
    wait_until(lambda: server.proc is None and server.wanted is None, "the server stopped")
    assert ask(client, "hi").status_code == 503
    assert server.view()["state"] == "waiting for GPUs"


def test_a_server_needing_more_gpus_than_are_free_of_leases_waits():
    supervisor = Supervisor([InferenceServerConfig(model="m", preset="command", gpus=2,
                                                   args=("true",))], 1.0)
    supervisor.set_gpus(["GPU-a", "GPU-b", "GPU-c"], ["GPU-b"])
    assert supervisor.servers[0].wanted == ("GPU-a", "GPU-c")
    supervisor.set_gpus(["GPU-a", "GPU-b"], ["GPU-b", "GPU-x"])
    assert supervisor.servers[0].wanted is None


AGENT = r'''
import sys, time
sys.path.insert(0, sys.argv[1])
from node.config import InferenceServerConfig
from node.inference.supervisor import Supervisor
config = InferenceServerConfig(model="m", preset="command", gpus=1, args=tuple(sys.argv[3:]))
supervisor = Supervisor([config], 1.0).start()
supervisor.set_gpus(["GPU-a"], [])
while not supervisor.servers[0].backend.ready:
    time.sleep(0.05)
open(sys.argv[2], "w").write(str(supervisor.servers[0].proc.pid))
time.sleep(3600)
'''


def gone(pid: int) -> bool:
    """No such process, or one that has exited and waits to be reaped by whoever adopted it."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


def test_a_sigkilled_agent_leaves_no_inference_server_behind(tmp_path):
    script, pid_file = tmp_path / "agent.py", tmp_path / "server.pid"
    script.write_text(AGENT)
    config = server_config(tmp_path)
    agent = subprocess.Popen([sys.executable, str(script), str(ROOT), str(pid_file),
                              *config.args])
    try:
        server_pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(),
                                    "the agent's server ready"))
        assert not gone(server_pid)
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        wait_until(lambda: gone(server_pid), "the server gone with its agent")
    finally:
        agent.kill()
        agent.wait()
        if pid_file.exists() and not gone(int(pid_file.read_text())):
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
