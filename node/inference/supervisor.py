"""The owner's inference servers as subprocesses: one per configured model.

Each is pinned to its local GPUs by UUID (CUDA_VISIBLE_DEVICES), listens on 127.0.0.1 only,
and logs through sunrig's logging (so to the journal under systemd). Its health is its own
endpoint's answer; a server that exits, or stops answering after it was ready, is restarted
after a backoff that doubles up to a limit and resets once it has run well for a while. When the
local GPU set changes, a server whose GPUs change is drained (no new requests; those in flight
may finish, for a bounded time), stopped and started on its new GPUs. A GPU that holds a lease
is never given to a server, whatever the caller passes.

A server dies with the agent: the kernel sends it SIGTERM when the thread that started it ends
(PR_SET_PDEATHSIG), so an agent killed with SIGKILL leaves no orphan holding a GPU. Each server
leads a process group of its own, and a stop signals the whole group, so a server's own workers
(vLLM's engine processes) go with it.
"""

from __future__ import annotations

import ctypes
import http.client
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from node.inference.backend import Backend
from node.inference.settings import command_line, health_path

log = logging.getLogger("sunrig.inference")

BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 60.0
HEALTHY_RESET_S = 60.0  # running well this long: the next failure starts the backoff afresh
HEALTH_EVERY_S = 5.0
HEALTH_TIMEOUT_S = 2.0
STARTING_TICK_S = 0.2  # health polled this often until the server is first ready
FAILED_CHECKS = 3  # a ready server that fails this many checks in a row is restarted
STOP_WAIT_S = 10.0  # after SIGTERM, before SIGKILL
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# SIGTERM, not SIGKILL: a server's own shutdown stops the worker processes it started
DEATH_SIGNAL = signal.SIGTERM


@dataclass(frozen=True)
class InferenceServer:
    """What runs for one model: the configured preset or command line, and its GPUs."""

    model: str
    config: Any  # the InferenceServerConfig
    gpu_uuids: tuple[str, ...]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ManagedServer:
    """One server's life, run by a thread of its own."""

    def __init__(self, config: Any, drain_s: float, stop: threading.Event,
                 popen: Callable[..., subprocess.Popen] = subprocess.Popen,
                 clock: Callable[[], float] = time.monotonic):
        self.config = config
        self.clock = clock
        self.backend = Backend(config.model, parallel=config.parallel)
        self.drain_s = drain_s
        self.stop_event = stop
        self.popen = popen
        self.wanted: tuple[str, ...] | None = () if config.gpus == 0 else None
        self.server: InferenceServer | None = None
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.backoff_s = BACKOFF_FIRST_S
        self.next_start = 0.0
        self.ready_since: float | None = None
        self.failed_checks = 0
        self.last_exit: int | None = None
        self._wake = threading.Event()

    def want(self, uuids: tuple[str, ...] | None) -> None:
        self.backend.starved = uuids is None
        if uuids != self.wanted:
            self.wanted = uuids
            self._wake.set()

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.step()
            tick = STARTING_TICK_S if self.proc and not self.backend.ready else HEALTH_EVERY_S
            self._wake.wait(tick if self.proc else min(tick, max(0.05, self.next_start
                                                                - self.clock())))
            self._wake.clear()
        self._stop_process()

    def step(self) -> None:
        """One pass: notice an exit, move to the wanted GPUs, (re)start when due, check health."""
        if self.proc is not None and self.proc.poll() is not None:
            self._exited()
        if self.proc is not None and self.server and self.server.gpu_uuids != self.wanted:
            self._move()
        if self.proc is None:
            if self.wanted is not None and self.clock() >= self.next_start:
                self._start()
            return
        self._check_health()

    def _start(self) -> None:
        port = self.config.port or free_port()
        argv, env_extra = command_line(self.config, port)
        env = {**os.environ, **env_extra, "CUDA_VISIBLE_DEVICES": ",".join(self.wanted or ())}
        try:
            self.proc = self.popen(argv, env=env, stdin=subprocess.DEVNULL,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   start_new_session=True,
                                   preexec_fn=die_with_parent(os.getpid()))
        except OSError as exc:
            log.error("model %s: cannot start %s: %s", self.config.model, argv[0], exc)
            self._schedule_restart()
            return
        self.server = InferenceServer(self.config.model, self.config, self.wanted or ())
        self.backend.port, self.backend.ready, self.backend.draining = port, False, False
        self.failed_checks = 0
        log.info("model %s: started %s on port %d, GPUs %s", self.config.model, argv[0], port,
                 ",".join(self.server.gpu_uuids) or "none")
        threading.Thread(target=_log_lines, args=(self.proc, self.config.model),
                         name=f"log-{self.config.model}", daemon=True).start()

    def _check_health(self) -> None:
        ok = _healthy(self.backend.port, health_path(self.config))
        now = self.clock()
        if ok:
            self.failed_checks = 0
            if not self.backend.ready:
                log.info("model %s: ready", self.config.model)
                self.backend.ready, self.ready_since = True, now
            elif self.ready_since is not None and now - self.ready_since > HEALTHY_RESET_S:
                self.backoff_s = BACKOFF_FIRST_S
            return
        if self.backend.ready:
            self.failed_checks += 1
            if self.failed_checks >= FAILED_CHECKS:
                log.warning("model %s: stopped answering its health check; restarting",
                            self.config.model)
                self._stop_process()
                self._schedule_restart()

    def _exited(self) -> None:
        self.last_exit = self.proc.returncode
        log.warning("model %s: server exited with status %s", self.config.model, self.last_exit)
        self.proc = None
        self.backend.ready = False
        self._schedule_restart()

    def _schedule_restart(self) -> None:
        self.restarts += 1
        self.next_start = self.clock() + self.backoff_s
        log.info("model %s: restarting in %.0f s", self.config.model, self.backoff_s)
        self.backoff_s = min(BACKOFF_MAX_S, self.backoff_s * 2)

    def _move(self) -> None:
        """Drain, stop, and let the next step start it on the wanted GPUs (if any)."""
        left = self.backend.drain(self.drain_s)
        if left:
            log.warning("model %s: %d requests still running after %.0f s of draining; "
                        "stopping anyway", self.config.model, left, self.drain_s)
        log.info("model %s: moving from GPUs %s to %s", self.config.model,
                 ",".join(self.server.gpu_uuids) or "none",
                 ",".join(self.wanted or ()) or "none (no local GPU left for it)")
        self._stop_process()
        self.next_start = 0.0

    def _stop_process(self) -> None:
        self.backend.ready = False
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()

    def view(self) -> dict[str, Any]:
        state = ("draining" if self.backend.draining and self.proc else
                 "ready" if self.backend.ready else "starting" if self.proc else
                 "waiting for GPUs" if self.wanted is None else "stopped")
        return {"model": self.config.model, "preset": self.config.preset, "state": state,
                "simulated": False, "port": self.backend.port or None,
                "gpu_uuids": list(self.server.gpu_uuids) if self.server and self.proc else [],
                "gpus_wanted": self.config.gpus, "inflight": self.backend.inflight,
                "restarts": self.restarts, "last_exit": self.last_exit}


class Supervisor:
    def __init__(self, servers: Iterable[Any], drain_s: float,
                 popen: Callable[..., subprocess.Popen] = subprocess.Popen,
                 clock: Callable[[], float] = time.monotonic):
        self._stop = threading.Event()
        self.servers = [ManagedServer(c, drain_s, self._stop, popen, clock) for c in servers]
        self._threads: list[threading.Thread] = []

    def backends(self) -> dict[str, Backend]:
        return {s.config.model: s.backend for s in self.servers}

    def start(self) -> Supervisor:
        for s in self.servers:
            t = threading.Thread(target=s.run, name=f"server-{s.config.model}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for s in self.servers:
            s._wake.set()
        for t in self._threads:
            t.join(STOP_WAIT_S * 2)

    def set_gpus(self, local_uuids: Iterable[str], leased_uuids: Iterable[str] = ()) -> None:
        """Hand out the local GPUs, in order, to the servers in config order; one whose count
        is not left waits (and answers 503). A server keeps its GPUs while they stay local."""
        leased = set(leased_uuids)
        free = [u for u in dict.fromkeys(local_uuids) if u not in leased]
        for s in self.servers:
            if s.config.gpus == 0:
                continue
            current = s.server.gpu_uuids if s.server and s.proc else ()
            keep = tuple(u for u in current if u in free)
            if len(keep) == s.config.gpus:
                chosen = keep
            elif len(free) >= s.config.gpus:
                chosen = tuple(free[:s.config.gpus])
            else:
                s.want(None)
                continue
            free = [u for u in free if u not in chosen]
            s.want(chosen)

    def view(self) -> list[dict[str, Any]]:
        return [s.view() for s in self.servers]


def die_with_parent(parent_pid: int) -> Callable[[], None]:
    """What the child runs between fork and exec: ask the kernel for DEATH_SIGNAL when its
    parent goes, and leave at once if the parent went before it asked. The libc function is
    looked up here, before the fork, so the child only calls it."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, int(DEATH_SIGNAL), 0, 0, 0)
        if os.getppid() != parent_pid:
            os._exit(1)
    return preexec


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """The server leads its own group (start_new_session): signal it and whatever it started."""
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        proc.send_signal(sig)


def _healthy(port: int, path: str) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HEALTH_TIMEOUT_S)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return resp.status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def _log_lines(proc: subprocess.Popen, model: str) -> None:
    """The server's output, line by line, into sunrig's log (the journal under systemd)."""
    out = logging.getLogger(f"sunrig.inference.{model}")
    for raw in iter(proc.stdout.readline, b""):
        line = raw.decode("utf-8", "replace").rstrip()
        if line:
            out.info("%s", line[:2000])
    proc.stdout.close()
