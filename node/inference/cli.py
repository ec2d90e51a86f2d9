"""`sunrig users`: the local inference's users and their keys.

Each command works on the store of `--config FILE` (the agent's) or of `--data-dir DIR` (the
demo's), and may run while the agent runs: the gateway sees a change at its next request.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from node.config import DEFAULT_CONFIG_PATH, default_config, load_config
from node.inference.names import check_user_name
from node.inference.users import UserExists, add_user
from node.storage.store import Store, from_epoch

EXIT_USAGE = 2


def add_parser(sub: argparse._SubParsersAction) -> None:
    users = sub.add_parser("users", help="users of the local inference gateway and their keys")
    actions = users.add_subparsers(required=True, metavar="ACTION")
    for name, helptext in (("add", "add a user and print their key (shown this once)"),
                           ("list", "list users with their requests and tokens"),
                           ("revoke", "revoke a user's key (their usage stays booked)")):
        p = actions.add_parser(name, help=helptext)
        if name != "list":
            p.add_argument("name")
        else:
            p.add_argument("--json", action="store_true")
        where = p.add_mutually_exclusive_group()
        where.add_argument("--config", help=f"the agent's config (default {DEFAULT_CONFIG_PATH})")
        where.add_argument("--data-dir", help="the demo's data folder (as `sunrig demo`)")
        p.set_defaults(func={"add": _add, "list": _list, "revoke": _revoke}[name])


def _store(args: argparse.Namespace) -> Store:
    if args.data_dir:
        from node.service import demo_config

        cfg = demo_config(default_config(), Path(args.data_dir), 8080)
    else:
        cfg = load_config(args.config or DEFAULT_CONFIG_PATH)
    return Store(cfg.store.path, cfg.site.timezone)


def _name(args: argparse.Namespace) -> str | None:
    try:
        return check_user_name(args.name)
    except ValueError as exc:
        print(f"sunrig users: {exc}", file=sys.stderr)
        return None


def _add(args: argparse.Namespace) -> int:
    if _name(args) is None:
        return EXIT_USAGE
    store = _store(args)
    try:
        key = add_user(store, args.name, datetime.now(UTC))
    except UserExists as exc:
        print(f"sunrig users: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(key)
    print(f"the key of {args.name}, shown this once: only its hash is kept", file=sys.stderr)
    return 0


def _revoke(args: argparse.Namespace) -> int:
    if _name(args) is None:
        return EXIT_USAGE
    store = _store(args)
    try:
        revoked = store.revoke_inference_user(args.name, datetime.now(UTC))
    finally:
        store.close()
    if not revoked:
        print(f"sunrig users: no active user {args.name!r}", file=sys.stderr)
        return 1
    print(f"revoked {args.name}")
    return 0


def _list(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        rows = store.inference_users()
    finally:
        store.close()
    users = [{"name": r["name"], "created": from_epoch(r["created"]).isoformat(),
              "revoked": from_epoch(r["revoked"]).isoformat() if r["revoked"] else None,
              "requests": r["requests"], "prompt_tokens": r["prompt_tokens"],
              "completion_tokens": r["completion_tokens"]} for r in rows]
    if args.json:
        print(json.dumps({"users": users}, indent=2))
        return 0
    if not users:
        print("no users; `sunrig users add NAME` makes one")
    for u in users:
        state = f"revoked {u['revoked'][:10]}" if u["revoked"] else "active"
        print(f"{u['name']:<24} {state:<18} {u['requests']:>7} requests "
              f"{u['prompt_tokens']:>10} tokens in {u['completion_tokens']:>10} out")
    return 0
