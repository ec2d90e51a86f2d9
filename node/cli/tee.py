"""`sunrig verify-lease` and the offline freshness bundle: what a tenant runs to check a lease."""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.x509 import load_pem_x509_certificate

from energy.files import MIB, FileProblem, read_bytes
from node.attest import EXIT_BAD_INPUT, EXIT_FAIL, EXIT_PASS, load_rim, load_vcek
from tee.amd import SnpTcb
from tee.bundle import load_bundle
from tee.bundle_fetch import KDS_URL, OCSP_URL, RIM_URL, Services, fetch_bundle
from tee.evidence import TeeError, Verdict
from tee.lease import LeaseTrust, TenantPolicy, verify_lease
from tee.sidecar import NONCE_BYTES, LeaseAnswer, parse_answer
from tee.verify import Trust

MAX_FILE_BYTES = 16 * MIB
TCB_NAMES = {"bl": "boot_loader", "tee": "tee", "snp": "snp", "ucode": "microcode", "fmc": "fmc"}


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the tenant's verification commands to the `sunrig` parser."""
    v = sub.add_parser("verify-lease", help="verify an Akash lease's TEE evidence offline "
                       "(the attestation sidecar's answer), exit 0 only when every check passes")
    v.add_argument("answer", help="the JSON the sidecar returned ('-' for stdin)")
    v.add_argument("--nonce", required=True, help="the 64-byte nonce sent, as hex or base64")
    v.add_argument("--tls-pubkey", help="the sidecar's TLS public key when the quote was asked "
                   "with bind_tls: base64 DER as /info gives it, or @FILE (PEM key or cert)")
    v.add_argument("--gpus", type=int, help="how many GPUs the lease has (a missing one fails)")
    v.add_argument("--bundle", help="a freshness bundle from `sunrig attest-bundle fetch`")
    v.add_argument("--vek", help="the VCEK or VLEK (DER or PEM) when neither the answer nor "
                   "the bundle holds it")
    v.add_argument("--rim", action="append", default=[], help="a RIM file (repeatable)")
    v.add_argument("--min-tcb", help="lowest reported TCB accepted, e.g. "
                   "bl=3,tee=0,snp=8,ucode=115")
    v.add_argument("--allow-debug", action="store_true", help="accept a debuggable guest")
    v.add_argument("--allow-migration-agent", action="store_true",
                   help="accept a guest policy allowing a migration agent")
    v.add_argument("--no-smt", action="store_true", help="refuse a guest policy allowing SMT")
    v.add_argument("--max-vmpl", type=int, default=0, help="the least privileged VMPL a report "
                   "may come from (default 0, where the sidecar asks)")
    v.add_argument("--no-measurements", action="store_true", help="accept GPU firmware that "
                   "cannot be compared with RIMs (reported as skipped)")
    v.add_argument("--at", help="judge validity at this ISO time (default now)")
    v.add_argument("--json", action="store_true")
    v.set_defaults(func=cmd_verify_lease)
    b = sub.add_parser("attest-bundle", help="the offline freshness bundle for verify-lease")
    inner = b.add_subparsers(required=True, metavar="fetch")
    f = inner.add_parser("fetch", help="gather RIMs, OCSP answers, VCEKs and AMD CRLs for the "
                         "evidence in the answers (needs network)")
    f.add_argument("answers", nargs="+", help="sidecar answers (JSON)")
    f.add_argument("--out", required=True, help="where to write the bundle")
    f.add_argument("--rim-url", default=RIM_URL)
    f.add_argument("--ocsp-url", default=OCSP_URL)
    f.add_argument("--kds-url", default=KDS_URL)
    f.set_defaults(func=cmd_bundle_fetch)


def cmd_verify_lease(args: argparse.Namespace) -> int:
    try:
        answer = _answer(args.answer)
        nonce = parse_lease_nonce(args.nonce)
        tls_key = parse_tls_pubkey(args.tls_pubkey) if args.tls_pubkey else None
        policy, trust = _policy(args), _trust(args)
    except TeeError as exc:
        print(f"bad input: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return _print(verify_lease(answer, nonce, tls_key, policy, trust), args.json)


def cmd_bundle_fetch(args: argparse.Namespace) -> int:
    try:
        answers = [_answer(path) for path in args.answers]
        trust = Trust()
        bundle = fetch_bundle(answers, trust.device_root, trust.rim_root,
                              Services(args.rim_url, args.ocsp_url, args.kds_url))
        Path(args.out).write_bytes(bundle.to_json())
    except TeeError as exc:
        print(f"bundle not written: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except OSError as exc:
        print(f"bundle not written: {args.out}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAIL
    print(f"{args.out}: {len(bundle.rims)} RIMs, {len(bundle.ocsp)} OCSP answers, "
          f"{len(bundle.vceks)} VCEKs, {len(bundle.crls)} CRLs")
    return EXIT_PASS


def _read(path: str, what: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read(MAX_FILE_BYTES)
    try:
        return read_bytes(path, MAX_FILE_BYTES)
    except FileProblem as exc:
        raise TeeError(f"{what} {exc}") from None


def _answer(path: str) -> LeaseAnswer:
    return parse_answer(_read(path, "answer"), path)


def parse_lease_nonce(text: str) -> bytes:
    """Hex (128 digits) or base64 (as sent to the sidecar) of exactly 64 bytes."""
    cleaned = text.strip().removeprefix("0x")
    try:
        nonce = bytes.fromhex(cleaned) if len(cleaned) == 2 * NONCE_BYTES else \
            base64.b64decode(cleaned, validate=True)
    except (ValueError, binascii.Error):
        raise TeeError("--nonce is neither 128 hex digits nor base64") from None
    if len(nonce) != NONCE_BYTES:
        raise TeeError(f"--nonce must be {NONCE_BYTES} bytes, got {len(nonce)}")
    return nonce


def parse_tls_pubkey(text: str) -> bytes:
    """The DER SubjectPublicKeyInfo the sidecar hashes, from base64 or a PEM key/cert file."""
    data = _read(text[1:], "TLS key file") if text.startswith("@") else text.encode()
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key = load_pem_x509_certificate(data).public_key()
        elif b"-----BEGIN PUBLIC KEY-----" in data:
            key = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_der_public_key(base64.b64decode(data.strip(), validate=True))
    except (ValueError, binascii.Error, TypeError):
        raise TeeError("--tls-pubkey is neither base64 DER nor a PEM public key or "
                       "certificate") from None
    return key.public_bytes(serialization.Encoding.DER,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def parse_min_tcb(text: str) -> SnpTcb:
    values: dict[str, int] = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        field = TCB_NAMES.get(name.strip())
        if field is None or not value.strip().isdigit():
            raise TeeError(f"--min-tcb: {part!r} is not NAME=NUMBER with NAME one of "
                           f"{', '.join(TCB_NAMES)}")
        values[field] = int(value)
    values.update({k: values.get(k, 0) for k in ("boot_loader", "tee", "snp", "microcode")})
    return SnpTcb(**values)


def _policy(args: argparse.Namespace) -> TenantPolicy:
    if args.gpus is not None and args.gpus < 0:
        raise TeeError(f"--gpus must be 0 or more, got {args.gpus}")
    return TenantPolicy(gpus=args.gpus, allow_debug=args.allow_debug,
                        allow_migration_agent=args.allow_migration_agent,
                        allow_smt=not args.no_smt,
                        min_tcb=parse_min_tcb(args.min_tcb) if args.min_tcb else None,
                        require_measurements=not args.no_measurements,
                        max_vmpl=args.max_vmpl)


def _trust(args: argparse.Namespace) -> LeaseTrust:
    at = None
    if args.at:
        try:
            at = datetime.fromisoformat(args.at)
        except ValueError:
            raise TeeError(f"--at {args.at!r} is not an ISO date and time") from None
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
    gpu = Trust(rims=tuple(load_rim(p) for p in args.rim), at=at)
    return LeaseTrust(gpu=gpu, vek=load_vcek(args.vek) if args.vek else None,
                      bundle=load_bundle(Path(args.bundle)) if args.bundle else None)


def _print(verdict: Verdict, as_json: bool) -> int:
    if as_json:
        print(json.dumps(verdict.as_dict(), indent=2))
    else:
        width = max((len(c.name) for c in verdict.checks), default=0)
        for c in verdict.checks:
            print(f"{c.status.upper():4}  {c.name:<{width}}  {c.detail}")
        failed = ", ".join(c.name for c in verdict.failed)
        print(f"verdict: {'PASS' if verdict.passed else 'FAIL (' + failed + ')'}")
    return EXIT_PASS if verdict.passed else EXIT_FAIL
