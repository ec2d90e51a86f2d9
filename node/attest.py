"""`sunrig attest`: collect and verify TEE evidence here, or verify evidence collected elsewhere.

Exit codes: 0 when every required check passes, 1 when a check fails or no evidence could be
collected, 2 for bad input (a file that is not hex, not PEM, not a report; a bad nonce).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from cryptography import x509

from energy.files import MIB, FileProblem, read_bytes
from node.config import TeeConfig, load_config
from node.errors import ConfigError
from tee import rim as rims
from tee.attest import TeeSource, attest
from tee.certs import load_certificate, load_pem_chain
from tee.evidence import (
    NONCE_BYTES,
    OFF,
    CpuEvidence,
    Evidence,
    GpuEvidence,
    TeeError,
    Verdict,
)
from tee.gpu import NvmlTee
from tee.spdm import parse_report, read_report_hex
from tee.verify import Trust, verify

EXIT_PASS, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2
# RIMs, certificate chains and reports are a few KiB each
MAX_INPUT_BYTES = 4 * MIB
T = TypeVar("T")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("attest", help="collect confidential-computing evidence here and verify it")
    p.add_argument("--nonce", help=f"{NONCE_BYTES}-byte nonce as hex (default: a random one)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--config", help="take RIMs, VCEK and AMD chain from this config's [tee]")
    p.set_defaults(func=cmd_attest)
    inner = p.add_subparsers(metavar="verify")
    v = inner.add_parser("verify", help="verify evidence collected elsewhere, offline")
    v.add_argument("--report", required=True, help="GPU attestation report as hex")
    v.add_argument("--certs", required=True, help="the GPU's certificate chain, PEM, leaf first")
    v.add_argument("--nonce", required=True, help="the nonce the report must be bound to, hex")
    v.add_argument("--rim", action="append", default=[], help="a driver or VBIOS RIM swidtag")
    v.add_argument("--snp-report", help="an SEV-SNP report binding the nonce and this GPU report")
    v.add_argument("--vcek", help="the AMD VCEK certificate (PEM or DER) for --snp-report")
    v.add_argument("--amd-chain", help="AMD's ASK and ARK, PEM, as AMD's KDS serves them")
    v.add_argument("--at", help="judge certificate validity at this ISO time (default: now)")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_verify)


def parse_nonce(text: str) -> bytes:
    try:
        nonce = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise TeeError(f"nonce {text!r} is not hex") from None
    if len(nonce) != NONCE_BYTES:
        raise TeeError(f"nonce must be {NONCE_BYTES} bytes ({2 * NONCE_BYTES} hex digits), "
                       f"got {len(nonce)}")
    return nonce


def _read(path: str, what: str) -> bytes:
    try:
        return read_bytes(path, MAX_INPUT_BYTES)
    except FileProblem as exc:
        raise TeeError(f"{what} {exc}") from None


def load_rim(path: str) -> rims.Rim:
    return rims.parse_rim(_read(path, "RIM"), path)


def load_vcek(path: str) -> x509.Certificate:
    return load_certificate(_read(path, "VCEK"), path)


def load_amd_chain(path: str) -> tuple[x509.Certificate, ...]:
    return tuple(load_pem_chain(_read(path, "AMD chain"), path))


def trust_from_files(rim_files: list[str], vcek: str | None = None, amd_chain: str | None = None,
                     at: datetime | None = None) -> Trust:
    return Trust(rims=tuple(load_rim(f) for f in rim_files),
                 vcek=load_vcek(vcek) if vcek else None,
                 amd_chain=load_amd_chain(amd_chain) if amd_chain else (), at=at)


def trust_from_config(tee: TeeConfig, file: str = "config") -> Trust:
    """Trust material named in [tee]; a file that is missing or wrong is a ConfigError naming
    its key (tee.rims[1], tee.vcek, tee.amd_cert_chain)."""
    return Trust(
        rims=tuple(_for_key(file, f"tee.rims[{i}]", load_rim, f) for i, f in enumerate(tee.rims)),
        vcek=_for_key(file, "tee.vcek", load_vcek, tee.vcek) if tee.vcek else None,
        amd_chain=_for_key(file, "tee.amd_cert_chain", load_amd_chain, tee.amd_cert_chain)
        if tee.amd_cert_chain else ())


def _for_key(file: str, key: str, load: Callable[[str], T], path: str) -> T:
    try:
        return load(path)
    except TeeError as exc:
        raise ConfigError(file, key, str(exc)) from None


def cmd_attest(args: argparse.Namespace, source: TeeSource | None = None) -> int:
    try:
        nonce = parse_nonce(args.nonce) if args.nonce else None
        tee = TeeConfig()
        if args.config:
            tee = load_config(args.config).tee
        trust = trust_from_config(tee, args.config or "config")
        evidence, verdict = attest(source or NvmlTee(), trust, nonce, Path(tee.configfs_tsm))
    except TeeError as exc:
        print(f"attestation failed: {exc}", file=sys.stderr)
        return EXIT_FAIL
    return _print(verdict, args.json, evidence)


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        evidence, nonce, trust = _offline_inputs(args)
    except TeeError as exc:
        print(f"bad input: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return _print(verify(evidence, nonce, trust), args.json, evidence)


def _offline_inputs(args: argparse.Namespace) -> tuple[Evidence, bytes, Trust]:
    nonce = parse_nonce(args.nonce)
    report = read_report_hex(_read(args.report, "report").decode("ascii", "replace"),
                             args.report)
    parse_report(report)  # a file that is no report at all is bad input, not a failed check
    certs = _read(args.certs, "certificate chain")
    load_pem_chain(certs, args.certs)
    cpu = None
    if args.snp_report:
        raw = _read(args.snp_report, "SEV-SNP report")
        cpu = CpuEvidence("sev_guest", raw, raw[0x50:0x90])
    try:
        at = datetime.fromisoformat(args.at).astimezone(UTC) if args.at else None
    except ValueError:
        raise TeeError(f"--at {args.at!r} is not an ISO date or time") from None
    evidence = Evidence(nonce, OFF, (GpuEvidence(0, "offline", report, certs),), cpu)
    return evidence, nonce, trust_from_files(args.rim, args.vcek, args.amd_chain, at)


def _print(verdict: Verdict, as_json: bool, evidence: Evidence) -> int:
    if as_json:
        out = verdict.as_dict() | {"nonce": evidence.nonce.hex(),
                                   "state": evidence.state.as_dict()}
        print(json.dumps(out, indent=2))
    else:
        width = max((len(c.name) for c in verdict.checks), default=10)
        for c in verdict.checks:
            print(f"{c.status.upper():4}  {c.name:<{width}}  {c.detail}")
        failed = len(verdict.failed)
        print(f"verdict: {'PASS' if verdict.passed else 'FAIL'} "
              f"({len(verdict.checks)} checks, {failed} required failed)")
    return EXIT_PASS if verdict.passed else EXIT_FAIL
