"""The host's confidential-computing preflight: can this rig hand its GPUs to a tenant's
confidential VM, as Akash's confidential-compute provider schedules them? Read-only.

In a confidential deployment the GPUs leave the host: bound to vfio-pci and passed into a Kata
confidential VM (AMD SEV-SNP or Intel TDX) with the GPU in CC mode, where the tenant attests
them. So the host can only check that everything the tenant's VM needs is in place:

- the IOMMU is on (/sys/class/iommu has its units: dmar* on Intel, ivhd* on AMD);
- every NVIDIA GPU function (PCI vendor 0x10de, class display VGA 0x0300 or 3D 0x0302) is
  bound to vfio-pci;
- each GPU's CC mode is `on` as NVIDIA's gpu-admin-tools reports it (`nvidia_gpu_tools.py
  --devices gpus --query-cc-mode`; `devtools` lifts the blocks on profiling and debugging, so
  it never counts: gpu-admin-tools README.md, query_cc_mode_hopper in nvidia_gpu_tools.py);
- the kernel runs confidential VMs: kvm_amd's `sev_snp` or kvm_intel's `tdx` parameter is Y
  (linux arch/x86/kvm/svm/sev.c, arch/x86/kvm/vmx/tdx.c: bool module parameters);
- the node's labels and RuntimeClasses the provider and the Kata runtime select on (see
  `NODE_LABELS` and `runtime_class_for`).

Each check is a named `Finding` that says what was seen and how to fix it. This module reads
files and plain data only; what the Kubernetes API answers is handed in as a `KubeView`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

NVIDIA_VENDOR = 0x10DE
GPU_CLASSES = (0x0300, 0x0302)  # PCI base class and subclass: VGA display, 3D controller
VFIO = "vfio-pci"
SNP, TDX = "snp", "tdx"
# the module parameter that says the kernel runs this kind of confidential VM
PLATFORM_PARAMS = {SNP: "sys/module/kvm_amd/parameters/sev_snp",
                   TDX: "sys/module/kvm_intel/parameters/tdx"}
# Labels the GPU Operator, its CC manager, Kata and node-feature-discovery set, and the values
# the provider's confidential-compute branch and kata-deploy's RuntimeClasses select on:
# gpu-operator controllers/state_manager.go (gpu.workload.config: vm-passthrough);
# k8s-cc-manager gpu_operator_eviction.py set_cc_state_label (cc.mode.state, cc.ready.state);
# kata-containers tools/packaging/kata-deploy/binary/src/main.rs (katacontainers.io/kata-runtime);
# akash-network/provider feature/confidential-compute cluster/kube/builder/workload.go.
WORKLOAD_CONFIG = "nvidia.com/gpu.workload.config"
CC_MODE_STATE = "nvidia.com/cc.mode.state"
CC_READY_STATE = "nvidia.com/cc.ready.state"
KATA_RUNTIME = "katacontainers.io/kata-runtime"
NODE_LABELS = ((WORKLOAD_CONFIG, "vm-passthrough"), (CC_MODE_STATE, "on"),
               (CC_READY_STATE, "true"), (KATA_RUNTIME, "true"))
# node-feature-discovery's rules in kata-deploy templates/node-feature-rules.yaml; the provider
# reads the same keys (cluster/kube/client_attestation.go)
PLATFORM_LABELS = {SNP: "amd.feature.node.kubernetes.io/snp",
                   TDX: "intel.feature.node.kubernetes.io/tdx"}
# a gpu-admin-tools line: "<time> INFO     GPU 0000:45:00.0 H100 0x2330 BAR0 0x... CC mode is on"
# (GPU.__str__ and the --query-cc-mode branch of cli/per_gpu.py)
_CC_LINE = re.compile(r"\bGPU (?P<bdf>[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]) "
                      r".* CC mode is (?P<mode>\S+)\s*$")
_CC_UNSUPPORTED = re.compile(r"Querying CC mode is not supported on GPU (?P<bdf>\S+)")
TEE_TYPE = "cpu-gpu"  # the GPU's CC inside a CPU TEE (akash provider cluster/types/v1beta3)


@dataclass(frozen=True)
class Finding:
    name: str  # "iommu", "vfio 0000:45:00.0", "label nvidia.com/cc.ready.state", ...
    ok: bool
    detail: str  # what was seen
    fix: str = ""  # how to make it pass; empty when it passes

    def to_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}


@dataclass(frozen=True)
class Preflight:
    checked: datetime
    findings: tuple[Finding, ...]
    platform: str | None = None  # snp or tdx, where the kernel runs one

    @property
    def passed(self) -> bool:
        return bool(self.findings) and all(f.ok for f in self.findings)

    @property
    def failed(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.ok)

    @property
    def tee_type(self) -> str | None:
        """What the provider may advertise as `tee/type`: only while every check passes."""
        return TEE_TYPE if self.passed else None

    def summary(self) -> str:
        if self.passed:
            return f"confidential-computing preflight passed ({self.platform})"
        return "confidential-computing preflight failed: " + "; ".join(
            f"{f.name}: {f.detail}" for f in self.failed)

    def to_dict(self) -> dict:
        return {"passed": self.passed, "checked": self.checked.isoformat(),
                "platform": self.platform, "tee_type": self.tee_type,
                "findings": [f.to_dict() for f in self.findings]}


@dataclass(frozen=True)
class CcReport:
    """What gpu-admin-tools said of each GPU's CC mode, by PCI address, and when."""

    modes: Mapping[str, str]
    taken: datetime
    source: str  # the file or command it came from, for the finding's detail
    problem: str = ""  # why it could not be read; then `modes` is empty


@dataclass(frozen=True)
class KubeView:
    """What the Kubernetes API answered: this node's labels and the RuntimeClass names;
    `error` says why they could not be read (then both are empty)."""

    node: str
    labels: Mapping[str, str] = field(default_factory=dict)
    runtime_classes: frozenset[str] = frozenset()
    error: str = ""


class PreflightError(ValueError):
    """An input the preflight cannot read (a report that is not gpu-admin-tools output)."""


def parse_cc_report(text: str, taken: datetime, source: str) -> CcReport:
    """The CC mode per GPU from `nvidia_gpu_tools.py --devices gpus --query-cc-mode` output
    (its log lines, stdout and stderr together). A GPU the tool cannot query is `unsupported`."""
    modes: dict[str, str] = {}
    for line in text.splitlines():
        if m := _CC_LINE.search(line):
            modes[m["bdf"].lower()] = m["mode"]
        elif m := _CC_UNSUPPORTED.search(line):
            modes[m["bdf"].lower()] = "unsupported"
    if not modes:
        raise PreflightError(f"{source}: no 'CC mode is ...' line: not the output of "
                             "nvidia_gpu_tools.py --devices gpus --query-cc-mode")
    return CcReport(modes, taken, source)


# --- the host: sysfs and procfs under `root` ---------------------------------------------

def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def nvidia_gpus(root: Path) -> dict[str, str]:
    """Each NVIDIA GPU function's PCI address and the driver bound to it ('' for none)."""
    found = {}
    devices = root / "sys/bus/pci/devices"
    for dev in sorted(devices.iterdir()) if devices.is_dir() else ():
        vendor, cls = _read(dev / "vendor"), _read(dev / "class")
        try:
            if int(vendor or "", 16) != NVIDIA_VENDOR or int(cls or "", 16) >> 8 not in GPU_CLASSES:
                continue
        except ValueError:
            continue  # a function whose ids cannot be read is no GPU we could pass through
        driver = dev / "driver"
        found[dev.name.lower()] = Path(driver.readlink()).name if driver.is_symlink() else ""
    return found


def check_iommu(root: Path) -> Finding:
    units = sorted(p.name for p in (root / "sys/class/iommu").glob("*"))
    if units:
        return Finding("iommu", True, "on: " + ", ".join(units))
    cmdline = _read(root / "proc/cmdline") or ""
    asked = [w for w in cmdline.split() if w.startswith(("intel_iommu=", "amd_iommu="))]
    seen = (f"kernel command line has {' '.join(asked)}" if asked
            else "not on the kernel command line")
    return Finding("iommu", False, f"off: /sys/class/iommu is empty ({seen})",
                   "enable VT-d (Intel) or AMD-Vi/IOMMU in the firmware and boot with "
                   "intel_iommu=on or amd_iommu=on, then reboot")


def check_vfio(gpus: Mapping[str, str]) -> list[Finding]:
    if not gpus:
        return [Finding("gpus", False, "no NVIDIA GPU function (vendor 0x10de, class 0x0300 or "
                        "0x0302) in /sys/bus/pci/devices",
                        "check that the GPUs are seated and powered and show in lspci")]
    out = []
    for bdf, driver in gpus.items():
        if driver == VFIO:
            out.append(Finding(f"vfio {bdf}", True, "bound to vfio-pci"))
            continue
        out.append(Finding(f"vfio {bdf}", False, f"bound to {driver or 'no driver'}, not vfio-pci",
                           f"label the node {WORKLOAD_CONFIG}=vm-passthrough so the GPU "
                           "Operator's vfio-manager binds it, or bind it yourself: echo "
                           f"vfio-pci > /sys/bus/pci/devices/{bdf}/driver_override"))
    return out


def check_cc_modes(gpus: Mapping[str, str], report: CcReport | None, now: datetime,
                   max_age_s: float) -> list[Finding]:
    query = "nvidia_gpu_tools.py --devices gpus --query-cc-mode"
    if report is None:
        return [Finding("cc mode", False, "no gpu-admin-tools report to read",
                        f"run `{query}` as root and hand its output in")]
    if report.problem:
        return [Finding("cc mode", False, report.problem, f"write `{query}` output there")]
    age_s = (now - report.taken).total_seconds()
    if age_s > max_age_s:
        return [Finding("cc mode", False, f"{report.source} is {age_s / 3600:.1f} h old",
                        f"run `{query}` again: a GPU reset can change its mode")]
    return [_cc_mode(bdf, report.modes.get(bdf), report.source) for bdf in gpus]


def _cc_mode(bdf: str, mode: str | None, source: str) -> Finding:
    name = f"cc mode {bdf}"
    set_on = (f"nvidia_gpu_tools.py --devices {bdf} --set-cc-mode=on "
              "--reset-after-cc-mode-switch (or label the node nvidia.com/cc.mode=on)")
    if mode == "on":
        return Finding(name, True, "on")
    if mode is None:
        return Finding(name, False, f"not in {source}", "query every GPU: --devices gpus")
    if mode == "devtools":
        return Finding(name, False, "devtools: profiling and debugging are open, never for a "
                       "tenant", set_on)
    if mode == "unsupported":
        return Finding(name, False, "this GPU has no CC mode", "only Hopper and later GPUs "
                       "have one: leave this rig's GPUs out of confidential offers")
    return Finding(name, False, mode, set_on)


def host_platform(root: Path) -> str | None:
    for platform, param in PLATFORM_PARAMS.items():
        if (_read(root / param) or "").upper() in ("Y", "1"):
            return platform
    return None


def check_platform(root: Path, platform: str | None) -> Finding:
    if platform is not None:
        return Finding("cpu tee", True, f"{platform}: /{PLATFORM_PARAMS[platform]} is Y")
    seen = ", ".join(f"/{p} is {_read(root / p) or 'absent'}" for p in PLATFORM_PARAMS.values())
    return Finding("cpu tee", False, f"the kernel runs no confidential VM ({seen})",
                   "enable SEV-SNP (AMD) or TDX (Intel) in the firmware, boot a host kernel "
                   "that supports it and load kvm_amd sev_snp=1 or kvm_intel tdx=1")


# --- the node on Kubernetes ----------------------------------------------------------------

def runtime_class_for(platform: str) -> str:
    """The RuntimeClass a GPU lease runs in: the names the provider's confidential-compute
    branch uses (cluster/kube/builder/builder.go RuntimeClassKataQemuNvidiaGPUSNP/TDX) and that
    kata-deploy creates as `kata-<shim>` (helm-chart templates/runtimeclasses.yaml)."""
    return f"kata-qemu-nvidia-gpu-{platform}"


def check_kube(view: KubeView | None, platform: str | None) -> list[Finding]:
    if view is None:
        return [Finding("kubernetes", False, "[kube] is not enabled: the node's labels and "
                        "RuntimeClasses cannot be read",
                        "set [kube] enabled = true and node_name in the sunrig config")]
    if view.error:
        return [Finding("kubernetes", False, view.error,
                        "check [kube] kubeconfig and that it may get nodes and runtimeclasses")]
    out = [_label(view, key, want) for key, want in NODE_LABELS]
    if platform is not None:  # else the host's `cpu tee` finding already says what to fix
        out += [_platform_label(view, platform), _runtime_class(view, runtime_class_for(platform))]
    return out


def _label(view: KubeView, key: str, want: str) -> Finding:
    name, value = f"label {key}", view.labels.get(key)
    if value == want:
        return Finding(name, True, value)
    seen = "not set" if value is None else f"{value!r}"
    if key == CC_MODE_STATE and value == "devtools":
        seen += " (profiling and debugging open: never for a tenant)"
    fixes = {WORKLOAD_CONFIG: f"kubectl label node {view.node} {key}={want} --overwrite",
             CC_MODE_STATE: f"kubectl label node {view.node} nvidia.com/cc.mode=on --overwrite "
                            "and let the GPU Operator's cc-manager set it",
             CC_READY_STATE: "set by the GPU Operator's cc-manager once CC mode is on",
             KATA_RUNTIME: "install Kata with kata-deploy, which labels the node"}
    return Finding(name, False, f"{seen}, wanted {want!r}", fixes[key])


def _platform_label(view: KubeView, platform: str) -> Finding:
    key = PLATFORM_LABELS[platform]
    if view.labels.get(key) == "true":
        return Finding(f"label {key}", True, "true")
    labelled = [p for p, k in PLATFORM_LABELS.items() if view.labels.get(k) == "true"]
    seen = f"the node is labelled {', '.join(labelled)}" if labelled else "not set"
    return Finding(f"label {key}", False, f"{seen}, the host runs {platform}",
                   "deploy node-feature-discovery with kata-deploy's NodeFeatureRule, or "
                   f"kubectl label node {view.node} {key}=true")


def _runtime_class(view: KubeView, wanted: str) -> Finding:
    name = f"runtimeclass {wanted}"
    if wanted in view.runtime_classes:
        return Finding(name, True, "present")
    seen = ", ".join(sorted(view.runtime_classes)) or "none"
    return Finding(name, False, f"missing (the cluster has {seen})",
                   "install kata-deploy with its NVIDIA GPU shims (try-kata-nvidia-gpu.values."
                   "yaml) or the GPU Operator's kata-manager")


def run_preflight(root: Path, report: CcReport | None, kube: KubeView | None, now: datetime,
                  max_report_age_s: float = 86400.0) -> Preflight:
    """Every check, in the order an owner would fix them; `root` is / on a real host."""
    gpus = nvidia_gpus(root)
    platform = host_platform(root)
    findings = [check_iommu(root), *check_vfio(gpus), check_platform(root, platform)]
    if gpus:
        findings += check_cc_modes(gpus, report, now, max_report_age_s)
    findings += check_kube(kube, platform)
    return Preflight(now, tuple(findings), platform)
