"""The agent's side of the confidential-computing preflight: gather its inputs, run it as one
poll job, and gate `tee/type` and the TEE price premium on its last result.

A rig advertises `tee/type` only while the host preflight passes (tee/preflight.py): the
tenant's confidential VM is where a GPU is attested, by the tenant. The host's own NVML
attestation (`sunrig attest`, the agent's attest job) is an operator diagnostic: it says the
driver and GPU on this host look right, it is never proof handed to a tenant, and it does not
open the gate.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from tee.preflight import (
    CcReport,
    KubeView,
    Preflight,
    PreflightError,
    parse_cc_report,
    run_preflight,
)

if TYPE_CHECKING:
    from kubernetes import client

    from node.config import Config

log = logging.getLogger("sunrig.tee")

# gpu-admin-tools needs root (it maps the GPU's registers) and the agent runs unprivileged, so a
# root job writes `nvidia_gpu_tools.py --devices gpus --query-cc-mode` output here (see README)
CC_REPORT_NAME = "gpu-cc-mode.txt"
PREFLIGHT_EVERY_S = 300.0  # labels and bindings change by an operator's hand, not by the second
MAX_REPORT_BYTES = 1 << 20  # a few lines per GPU; anything larger is not the tool's output
KUBE_TIMEOUT_S = 10.0  # a hung API server must not hold the preflight job for ever
EVENT_KIND = "tee"


class Events(Protocol):
    def add_event(self, ts: datetime, kind: str, message: str) -> None: ...


def cc_report_path(cfg: Config) -> Path:
    """Where the root job leaves gpu-admin-tools' CC mode report: beside the store."""
    return Path(cfg.store.path).parent / CC_REPORT_NAME


def read_cc_report(path: Path) -> CcReport | None:
    """The report at `path`, timed by when it was written; None where there is none.
    PreflightError names a file that is there and cannot be read as the tool's output."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_REPORT_BYTES + 1)
            taken = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PreflightError(f"{path}: cannot be read ({exc.strerror})") from None
    if len(data) > MAX_REPORT_BYTES:
        raise PreflightError(f"{path}: over {MAX_REPORT_BYTES} bytes, not gpu-admin-tools output")
    return parse_cc_report(data.decode("utf-8", "replace"), taken, str(path))


def read_kube_view(core: client.CoreV1Api, node_name: str) -> KubeView:
    """This node's labels and the cluster's RuntimeClass names; a refusal or an unreachable
    API server comes back as the view's `error` (status and reason only: an answer's body and
    headers are not repeated into logs)."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError
    try:
        node = core.read_node(node_name, _request_timeout=KUBE_TIMEOUT_S)
        classes = client.NodeV1Api(core.api_client).list_runtime_class(
            _request_timeout=KUBE_TIMEOUT_S)
    except ApiException as exc:
        return KubeView(node_name, error=f"the Kubernetes API answered {exc.status} "
                        f"{exc.reason} reading node {node_name} and RuntimeClasses")
    except (HTTPError, OSError) as exc:
        return KubeView(node_name, error=f"the Kubernetes API cannot be reached "
                        f"({type(exc).__name__})")
    labels = dict(node.metadata.labels or {})
    return KubeView(node_name, labels, frozenset(c.metadata.name for c in classes.items or ()))


def host_preflight(cfg: Config, root: Path = Path("/"), report_path: Path | None = None,
                   core: client.CoreV1Api | None = None) -> Callable[[datetime], Preflight]:
    """The preflight of this host as the config describes it, ready to run at any `now`."""
    path = report_path or cc_report_path(cfg)
    k = cfg.kube

    def run(now: datetime) -> Preflight:
        try:
            report = read_cc_report(path)
        except PreflightError as exc:
            report = CcReport({}, now, str(path), problem=str(exc))
        view = None
        if k.enabled:
            api = core
            if api is None:
                from node.cluster.kube import api_client
                api = api_client(k.kubeconfig or None)
            view = read_kube_view(api, k.node_name)
        return run_preflight(root, report, view, now)
    return run


class TeeGate:
    """The last preflight, and whether markets may hear of TEE now. `poll` is the agent's job;
    the gate opens and closes only on what it last saw, and says so once per change."""

    def __init__(self, preflight: Callable[[datetime], Preflight]):
        self._preflight = preflight
        self.last: Preflight | None = None
        self._said: bool | None = None  # the state last logged; None before the first poll

    @property
    def open(self) -> bool:
        return self.last is not None and self.last.passed

    def poll(self, now: datetime, events: Events | None = None) -> Preflight:
        was_open = self.open
        try:
            result = self._preflight(now)
        except Exception:
            self.last = None  # nothing known: nothing advertised
            self._note(now, events, "tee/type withdrawn: the confidential-computing "
                       "preflight could not run" if was_open else "")
            raise
        self.last = result
        self._note(now, events, _message(result, was_open))
        return result

    def _note(self, now: datetime, events: Events | None, message: str) -> None:
        """Log and record a change of the gate once: opened, withdrawn, or closed at first."""
        if self.open == self._said:
            return
        withdrawn, self._said = bool(self._said), self.open
        if not message:
            return
        log.log(logging.WARNING if withdrawn else logging.INFO, message)
        if events is not None:
            events.add_event(now, EVENT_KIND, message)


def _message(result: Preflight, was_open: bool) -> str:
    if result.passed:
        return f"tee/type {result.tee_type} advertised: {result.summary()}"
    verb = "withdrawn" if was_open else "not advertised"
    return f"tee/type {verb}: {result.summary()}"


def gated_offer(gate: TeeGate | None, floor_site: float, premium_pct: float
                ) -> tuple[float, bool]:
    """The floor and TEE flag to offer: the TEE premium applies exactly while the gate is
    open (CC mode costs tenants about that much throughput), never on a host that failed."""
    if gate is None or not gate.open:
        return floor_site, False
    return floor_site * (1.0 + premium_pct / 100.0), True
