"""The tenant's verifier: time per lease answer. `make bench` runs this.

Answers are built from recorded public evidence in the sidecar's wire format
(tests/data/tee/<source>/README.md): Trustee's SEV-SNP report with its VCEK (CPU only), and
NVIDIA's four-GPU Hopper evidence joined to an SNP report signed by the tests' AMD-style chain
(no recorded SNP report binds a recorded GPU nonce). Each timing covers parsing the JSON answer
and every check of `verify_lease`, as `sunrig verify-lease` runs them.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography import x509  # noqa: E402

from tee.lease import LeaseTrust, TenantPolicy, verify_lease  # noqa: E402
from tee.sidecar import answer_json, parse_answer  # noqa: E402
from tee.verify import Trust  # noqa: E402
from tests.test_tee_lease import AT, AmdTestChain, recorded_gpus  # noqa: E402

DATA = ROOT / "tests" / "data" / "tee"
ROUNDS = 30


def _gpu_lease() -> tuple[bytes, bytes, LeaseTrust, TenantPolicy]:
    gpus = recorded_gpus("multi_gpu_hopper.json")
    nonce = gpus[0].report[4:36] + bytes(32)
    chain = AmdTestChain()
    policy = TenantPolicy(gpus=len(gpus), require_measurements=False)
    return answer_json("snp-gpu", chain.report(nonce), gpus), nonce, chain.trust(), policy


def _cpu_lease() -> tuple[bytes, bytes, LeaseTrust, TenantPolicy]:
    report = (DATA / "trustee" / "test-report.bin").read_bytes()
    vcek = x509.load_der_x509_certificate((DATA / "trustee" / "test-vcek.der").read_bytes())
    return (answer_json("snp", report, []), report[0x50:0x90],
            LeaseTrust(gpu=Trust(at=AT), vek=vcek), TenantPolicy(gpus=0))


def time_lease(data: bytes, nonce: bytes, trust: LeaseTrust,
               policy: TenantPolicy) -> list[float]:
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        verdict = verify_lease(parse_answer(data, "answer"), nonce, None, policy, trust)
        times.append((time.perf_counter() - start) * 1000)
        if not verdict.passed:
            raise SystemExit(f"the benchmark's answer did not verify: {verdict.failed}")
    return times


def main() -> int:
    print(f"verify-lease, time per lease answer ({ROUNDS} rounds, offline):")
    for name, build in (("SEV-SNP only (recorded, Milan VCEK)", _cpu_lease),
                        ("SEV-SNP + 4 x H100 (recorded GPUs)", _gpu_lease)):
        times = time_lease(*build())
        print(f"  {name:<38} median {statistics.median(times):6.1f} ms   "
              f"worst {max(times):6.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
