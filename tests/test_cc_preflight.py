"""The host's confidential-computing preflight on fake hosts: a sysfs and procfs tree under a
root directory, gpu-admin-tools output and Kubernetes answers recorded from their sources
(tests/data/cc/README.md), the Kubernetes ones served over HTTP on 127.0.0.1 to the real
kubernetes client."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from node.cli.commands import main
from node.tee_gate import read_kube_view
from tee.preflight import (
    KubeView,
    Preflight,
    PreflightError,
    parse_cc_report,
    run_preflight,
)
from tests.kube_fake import FakeKube, _list, write_kubeconfig

DATA = Path(__file__).parent / "data" / "cc"
NOW = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
GPUS = ("0000:45:00.0", "0000:c5:00.0")
NODE = json.loads((DATA / "node_cc_ready.json").read_text())
CLASSES = json.loads((DATA / "runtimeclasses_kata_nvidia.json").read_text())
NODES = re.compile(r"^/api/v1/nodes/([^/]+)$")
RUNTIME_CLASSES = "/apis/node.k8s.io/v1/runtimeclasses"


class CcKube(FakeKube):
    """The API server's Node and RuntimeClass reads beside the pods the split uses."""

    def __init__(self):
        super().__init__()
        self.nodes = {NODE["metadata"]["name"]: json.loads(json.dumps(NODE))}
        self.runtime_classes = [dict(c) for c in CLASSES["items"]]

    def answer(self, method: str, path: str, q: dict, body) -> tuple:
        if (m := NODES.match(path)) and method == "GET":
            node = self.nodes.get(m.group(1))
            return (200, node) if node else (404, "NotFound", f'nodes "{m.group(1)}" not found')
        if path == RUNTIME_CLASSES and method == "GET":
            return 200, _list("RuntimeClassList", "node.k8s.io/v1", self.runtime_classes)
        return super().answer(method, path, q, body)

    def labels(self) -> dict:
        return self.nodes["rig-1"]["metadata"]["labels"]


@pytest.fixture
def kube():
    fake = CcKube()
    yield fake
    fake.close()


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def pci_function(root: Path, bdf: str, vendor: int, cls: int, driver: str | None) -> None:
    """A PCI function as sysfs shows it: hex ids and a driver link into /sys/bus/pci/drivers."""
    dev = root / "sys/bus/pci/devices" / bdf
    write(dev / "vendor", f"0x{vendor:04x}\n")
    write(dev / "class", f"0x{cls:06x}\n")
    if driver:
        (root / "sys/bus/pci/drivers" / driver).mkdir(parents=True, exist_ok=True)
        os.symlink(f"../../../../bus/pci/drivers/{driver}", dev / "driver")


@pytest.fixture
def host(tmp_path) -> Path:
    """An AMD SEV-SNP host ready for confidential GPUs: two H100s (3D controller class) on
    vfio-pci, an NVIDIA audio function and a NIC that are no GPUs, the IOMMU on."""
    root = tmp_path / "host"
    for bdf in GPUS:
        pci_function(root, bdf, 0x10DE, 0x030200, "vfio-pci")
    pci_function(root, "0000:45:00.1", 0x10DE, 0x040300, "snd_hda_intel")
    pci_function(root, "0000:41:00.0", 0x15B3, 0x020000, "mlx5_core")
    (root / "sys/class/iommu/ivhd0").mkdir(parents=True)
    write(root / "proc/cmdline", "BOOT_IMAGE=/vmlinuz-6.11.0-snp-host root=/dev/nvme0n1p2 "
          "amd_iommu=on iommu=pt mem_encrypt=on kvm_amd.sev=1\n")
    write(root / "sys/module/kvm_amd/parameters/sev_snp", "Y\n")
    write(root / "sys/module/kvm_amd/parameters/sev", "Y\n")
    return root


def report(name: str = "gpu_admin_tools_cc_on.txt", age: timedelta = timedelta(minutes=3)):
    return parse_cc_report((DATA / name).read_text(), NOW - age, name)


def preflight(host: Path, kube: CcKube | None, cc=None) -> Preflight:
    view = read_kube_view(_core(kube), "rig-1") if kube is not None else None
    return run_preflight(host, report() if cc is None else cc, view, NOW)


def _core(kube: CcKube):
    from node.cluster.kube import api_client
    return api_client(host=kube.url)


def failed(result: Preflight) -> list[str]:
    return [f.name for f in result.failed]


def test_a_ready_snp_host_passes_every_check(host, kube):
    result = preflight(host, kube)
    assert failed(result) == [] and result.passed and result.tee_type == "cpu-gpu"
    assert result.platform == "snp"
    names = [f.name for f in result.findings]
    assert names == ["iommu", "vfio 0000:45:00.0", "vfio 0000:c5:00.0", "cpu tee",
                     "cc mode 0000:45:00.0", "cc mode 0000:c5:00.0",
                     "label nvidia.com/gpu.workload.config", "label nvidia.com/cc.mode.state",
                     "label nvidia.com/cc.ready.state", "label katacontainers.io/kata-runtime",
                     "label amd.feature.node.kubernetes.io/snp",
                     "runtimeclass kata-qemu-nvidia-gpu-snp"]
    assert all(f.fix == "" for f in result.findings)


def _unbind(host: Path, kube: CcKube) -> None:
    link = host / "sys/bus/pci/devices/0000:c5:00.0/driver"
    link.unlink()
    (host / "sys/bus/pci/drivers/nvidia").mkdir()
    os.symlink("../../../../bus/pci/drivers/nvidia", link)


def _iommu_off(host: Path, kube: CcKube) -> None:
    (host / "sys/class/iommu/ivhd0").rmdir()


def _no_snp(host: Path, kube: CcKube) -> None:
    write(host / "sys/module/kvm_amd/parameters/sev_snp", "N\n")


def _label(key: str, value: str | None):
    def change(host: Path, kube: CcKube) -> None:
        if value is None:
            kube.labels().pop(key)
        else:
            kube.labels()[key] = value
    return change


def _only_tdx_class(host: Path, kube: CcKube) -> None:
    kube.runtime_classes = [c for c in kube.runtime_classes
                            if not c["metadata"]["name"].endswith("-snp")]


def _forbidden(host: Path, kube: CcKube) -> None:
    kube.fail_next = [403]


# each fault on its own fails exactly its own finding, and says what was seen and the fix
FAULTS = {
    "iommu off": (_iommu_off, "iommu", "/sys/class/iommu is empty"),
    "a GPU on the nvidia driver": (_unbind, "vfio 0000:c5:00.0", "bound to nvidia"),
    "no SEV-SNP in the kernel": (_no_snp, "cpu tee", "sev_snp is N"),
    "container workloads": (_label("nvidia.com/gpu.workload.config", "container"),
                            "label nvidia.com/gpu.workload.config", "'container'"),
    "cc manager reports devtools": (_label("nvidia.com/cc.mode.state", "devtools"),
                                    "label nvidia.com/cc.mode.state", "never for a tenant"),
    "cc not ready": (_label("nvidia.com/cc.ready.state", "false"),
                     "label nvidia.com/cc.ready.state", "'false'"),
    "no kata": (_label("katacontainers.io/kata-runtime", None),
                "label katacontainers.io/kata-runtime", "not set"),
    "no snp label": (_label("amd.feature.node.kubernetes.io/snp", None),
                     "label amd.feature.node.kubernetes.io/snp", "not set"),
    "no snp runtime class": (_only_tdx_class, "runtimeclass kata-qemu-nvidia-gpu-snp",
                             "kata-qemu-nvidia-gpu-tdx"),
    "api refuses": (_forbidden, "kubernetes", "403"),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_each_fault_fails_its_own_finding_with_a_fix(host, kube, fault):
    change, name, seen = FAULTS[fault]
    change(host, kube)
    result = preflight(host, kube)
    assert failed(result) == [name] and not result.passed and result.tee_type is None
    finding = result.failed[0]
    assert seen in finding.detail and finding.fix
    assert name in result.summary()


ON_TEXT = (DATA / "gpu_admin_tools_cc_on.txt").read_text()
SET_ON = "--set-cc-mode=on"


@pytest.mark.parametrize(("cc", "seen", "fix"), [
    (report("gpu_admin_tools_cc_devtools.txt"), "devtools: profiling", SET_ON),
    (parse_cc_report(ON_TEXT.replace("0x3c040000000 CC mode is on", "0x3c040000000 CC mode is "
                                     "off"), NOW, "off.txt"), "off", SET_ON),
    (parse_cc_report("\n".join(ON_TEXT.splitlines()[:-1]), NOW, "one-gpu.txt"),
     "not in one-gpu.txt", "--devices gpus"),
], ids=["devtools", "off", "left out"])
def test_a_gpu_not_in_cc_mode_on_fails_alone(host, kube, cc, seen, fix):
    result = preflight(host, kube, cc)
    assert failed(result) == ["cc mode 0000:c5:00.0"]
    assert result.failed[0].detail.startswith(seen) and fix in result.failed[0].fix


def test_a_stale_or_missing_report_fails_the_cc_check(host, kube):
    stale = preflight(host, kube, report(age=timedelta(days=2)))
    assert failed(stale) == ["cc mode"] and "48.0 h old" in stale.failed[0].detail
    view = read_kube_view(_core(kube), "rig-1")
    missing = run_preflight(host, None, view, NOW)
    assert failed(missing) == ["cc mode"] and "--query-cc-mode" in missing.failed[0].fix


def test_a_host_without_gpus_or_kubernetes_says_so(tmp_path):
    root = tmp_path / "bare"
    (root / "sys/class/iommu/dmar0").mkdir(parents=True)
    write(root / "sys/module/kvm_intel/parameters/tdx", "Y\n")
    result = run_preflight(root, None, None, NOW)
    assert failed(result) == ["gpus", "kubernetes"] and result.platform == "tdx"


def test_a_tdx_host_needs_the_tdx_label_and_runtime_class(host, kube):
    write(host / "sys/module/kvm_amd/parameters/sev_snp", "N\n")
    write(host / "sys/module/kvm_intel/parameters/tdx", "Y\n")
    result = preflight(host, kube)
    assert failed(result) == ["label intel.feature.node.kubernetes.io/tdx"]
    assert "the node is labelled snp" in result.failed[0].detail
    kube.labels()["intel.feature.node.kubernetes.io/tdx"] = "true"
    assert preflight(host, kube).passed


def test_an_unknown_node_is_named(host, kube):
    view = read_kube_view(_core(kube), "rig-2")
    assert view.error == "the Kubernetes API answered 404 Not Found reading node rig-2 and " \
                         "RuntimeClasses"
    result = run_preflight(host, report(), view, NOW)
    assert failed(result) == ["kubernetes"]


def test_an_unreachable_api_server_is_named(host, kube):
    from node.cluster.kube import api_client
    kube.close()
    view = read_kube_view(api_client(host=kube.url), "rig-1")
    assert view.error.startswith("the Kubernetes API cannot be reached")
    assert failed(run_preflight(host, report(), view, NOW)) == ["kubernetes"]


def test_text_that_is_not_gpu_admin_tools_output_is_refused():
    with pytest.raises(PreflightError, match="bad.txt: no 'CC mode is ...' line"):
        parse_cc_report("GPU 0 on\n", NOW, "bad.txt")
    unsupported = parse_cc_report("2026-11-30,09:12:01.412 ERROR    Querying CC mode is not "
                                  "supported on GPU 0000:45:00.0 A100 0x20b0 BAR0 0x1\n",
                                  NOW, "a100.txt")
    assert unsupported.modes == {"0000:45:00.0": "unsupported"}


def test_kube_view_reads_labels_and_runtime_classes_through_the_client(kube):
    view = read_kube_view(_core(kube), "rig-1")
    assert view == KubeView("rig-1", NODE["metadata"]["labels"],
                            frozenset({"kata-qemu-nvidia-gpu", "kata-qemu-nvidia-gpu-snp",
                                       "kata-qemu-nvidia-gpu-tdx"}))
    assert "GET /api/v1/nodes/rig-1" in kube.calls and f"GET {RUNTIME_CLASSES}" in kube.calls


# --- the command ----------------------------------------------------------------------------------

def _config(tmp_path: Path, kube: CcKube) -> Path:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", kube.url)
    cfg = tmp_path / "sunrig.toml"
    cfg.write_text(f"[kube]\nenabled = true\nnode_name = 'rig-1'\n"
                   f"kubeconfig = '{kubeconfig}'\n[store]\npath = '{tmp_path}/sunrig.db'\n")
    return cfg


def test_the_command_passes_on_a_ready_host_and_prints_json(host, kube, tmp_path, capsys):
    cfg = _config(tmp_path, kube)
    (tmp_path / "gpu-cc-mode.txt").write_text((DATA / "gpu_admin_tools_cc_on.txt").read_text())
    assert main(["cc", "preflight", "--config", str(cfg), "--root", str(host), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["passed"] and doc["tee_type"] == "cpu-gpu" and doc["platform"] == "snp"
    assert len(doc["findings"]) == 12


def test_the_command_names_each_failure_and_its_fix(host, kube, tmp_path, capsys):
    cfg = _config(tmp_path, kube)
    _unbind(host, kube)
    cc = DATA / "gpu_admin_tools_cc_devtools.txt"
    assert main(["cc", "preflight", "--config", str(cfg), "--root", str(host),
                 "--cc-report", str(cc)]) == 1
    out, err = capsys.readouterr()
    assert "FAIL  vfio 0000:c5:00.0: bound to nvidia, not vfio-pci" in out
    assert "FAIL  cc mode 0000:c5:00.0: devtools" in out
    assert out.count("      fix: ") == 2 and "PASS  iommu: on: ivhd0" in out
    assert "tee/type is not advertised: 2 check(s) failed" in err


def test_the_command_refuses_a_root_that_is_not_a_directory(tmp_path, capsys):
    assert main(["cc", "preflight", "--root", str(tmp_path / "nope")]) == 2
    assert "--root" in capsys.readouterr().err
