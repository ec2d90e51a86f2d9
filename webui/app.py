"""Flask app factory: the dashboard page and the JSON API. No module-level state."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, abort, jsonify, redirect, render_template, request, session
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadRequest, HTTPException

from webui import metrics
from webui.auth import CHANGES, MIN_PASSWORD, Auth, AuthError, Throttled, safe_next

OPEN_PATHS = ("/login", "/setup", "/static/", "/api/session")
MAX_BODY_BYTES = 256 * 1024  # the largest honest body, a settings change, is a few kB
MAX_JSON_DEPTH = 32  # settings nest three deep; json's parser recurses per level


class NotJsonError(ValueError):
    """An answer held a value JSON cannot carry (NaN, infinity): reported, never sent broken."""


class StrictJSONProvider(DefaultJSONProvider):
    """Answers are strict JSON: NaN and Infinity are refused instead of written as bare words
    that no JSON parser (the dashboard's, `sunrig status`) accepts."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        try:
            return super().dumps(obj, **kwargs)
        except ValueError as exc:
            raise NotJsonError(f"the answer holds a value that is not a JSON number ({exc})"
                               ) from None


def json_body() -> Any:
    """The request's JSON, parsed strictly, or a 400 that says what was wrong with it: not
    UTF-8, nested too deep, NaN or Infinity, a number out of range, a key given twice, or
    text that is not Unicode. Too large a body is a 413 before any of it is read."""
    if not request.is_json:
        abort(400, "send a JSON object with Content-Type: application/json")
    raw = request.get_data(cache=True)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        abort(400, f"the body is not UTF-8 (byte {exc.start})")
    if _nesting(text) > MAX_JSON_DEPTH:
        abort(400, f"the JSON is nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        doc = json.loads(text, parse_constant=_no_constant, parse_float=_finite,
                         object_pairs_hook=_unique_keys)
        _unicode_only(doc)
    except (ValueError, RecursionError) as exc:
        abort(400, f"the body is not valid JSON: {exc}")
    return doc


def _nesting(text: str) -> int:
    """How deep arrays and objects nest, strings skipped: checked before parsing, since the
    parser itself would overflow the stack on a deep enough document."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            in_string = escaped or ch != '"'
            escaped = not escaped and ch == "\\"
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:20]} is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object; a key given twice is refused, since parsers disagree on which one wins."""
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise ValueError(f"key {key[:40]!r} appears twice")
        doc[key] = value
    return doc


def _unicode_only(doc: Any) -> None:
    """Lone surrogates (\\ud800) parse but cannot be stored or shown: refuse them here."""
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            item.encode("utf-8")  # UnicodeEncodeError is a ValueError
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def create_app(status: Callable[[], dict[str, Any]], auth: Auth | None = None,
               open_reading: bool = True,
               views: dict[str, Callable[[dict], dict[str, Any]]] | None = None,
               actions: dict[str, Callable[[dict], dict[str, Any]]] | None = None) -> Flask:
    """`status` returns the agent's live state (see node.status); the app only presents it.
    `auth` guards changes (and reading, unless `open_reading`: a server beyond localhost);
    without it no change is accepted at all."""
    app = Flask(__name__)
    app.json = StrictJSONProvider(app)
    app.json.sort_keys = False
    app.secret_key = auth.session_key if auth else b"no-changes-accepted"
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict",
                      MAX_CONTENT_LENGTH=MAX_BODY_BYTES, MAX_FORM_MEMORY_SIZE=MAX_BODY_BYTES)
    registry = metrics.registry_for(status)

    @app.before_request
    def guard():
        session.setdefault("csrf", Auth.new_csrf())
        if request.path.startswith(OPEN_PATHS) or request.routing_exception is not None:
            return None  # no such page, or not this method: that answer is the honest one
        changing = request.method in CHANGES
        if not changing and open_reading:
            return None
        if auth is None:
            abort(403, "this server accepts no changes")
        if not session.get("owner"):
            if request.path.startswith(("/api/", "/metrics")) or changing:
                abort(401, "log in first: changes need the owner's login")
            back = safe_next(request.full_path.rstrip("?"))
            return redirect("/login?" + urlencode({"next": back}))
        given = request.headers.get("X-CSRF-Token") or request.form.get("csrf_token")
        if changing and not Auth.csrf_ok(session.get("csrf"), given):
            abort(403, "missing or wrong CSRF token")
        return None

    @app.get("/metrics")
    def prometheus():
        return Response(metrics.render(registry), content_type=metrics.CONTENT_TYPE)

    @app.get("/api/session")
    def api_session():
        return jsonify({"ok": True, "logged_in": bool(session.get("owner")),
                        "password_set": bool(auth and auth.has_password),
                        "csrf_token": session["csrf"]})

    @app.get("/login")
    def login_page():
        setup = auth is not None and not auth.has_password
        return render_template("login.html", setup=setup, csrf=session["csrf"], error=None,
                               next=safe_next(request.args.get("next")), min_len=MIN_PASSWORD)

    @app.post("/login")
    def login():
        return _log_in(setting=False)

    @app.post("/setup")
    def setup():
        return _log_in(setting=True)

    @app.post("/logout")
    def logout():
        session.clear()
        return _done("/")

    def _log_in(setting: bool):
        if auth is None:
            abort(403, "this server accepts no changes")
        data = _login_fields()
        if not Auth.csrf_ok(session.get("csrf"), request.headers.get("X-CSRF-Token")
                            or _text(data.get("csrf_token"))):
            abort(403, "missing or wrong CSRF token")
        password = _text(data.get("password"))
        try:
            if setting:
                if auth.has_password:
                    raise AuthError("a password is set already; log in instead")
                confirm = _text(data.get("confirm")) if "confirm" in data else None
                auth.set_password(password, confirm)
            else:
                auth.check(password, request.remote_addr or "?")
        except AuthError as exc:
            code = 429 if isinstance(exc, Throttled) else 400 if setting else 401
            headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Throttled) \
                else {}
            if request.is_json:
                return jsonify({"ok": False, "error": str(exc)}), code, headers
            return render_template("login.html", setup=setting, csrf=session["csrf"],
                                   error=str(exc), next=safe_next(data.get("next")),
                                   min_len=MIN_PASSWORD), code, headers
        session.clear()
        session["owner"], session["csrf"] = True, Auth.new_csrf()  # a fresh token per login
        return _done(data.get("next"))

    def _login_fields() -> dict[str, Any]:
        if not request.is_json:
            return request.form.to_dict()
        body = json_body()
        if not isinstance(body, dict):
            abort(400, "send a JSON object")
        return body

    def _done(next_path: object):
        if request.is_json:
            return jsonify({"ok": True, "csrf_token": session.get("csrf")})
        return redirect(safe_next(next_path))  # never off to another site

    @app.get("/")
    def overview():
        return render_template("overview.html", s=status())

    @app.get("/api/status")
    def api_status():
        return jsonify({"ok": True, **status()})

    views = views or {}

    def view(name: str) -> dict[str, Any]:
        if name not in views:
            abort(404, f"no such API: /api/{name}")
        try:
            return views[name](request.args.to_dict())
        except ValueError as exc:  # a bad query: say what was wrong
            abort(400, str(exc))

    @app.get("/api/history.csv")
    def history_csv():
        doc = view("history")
        out = io.StringIO()
        w = csv.writer(out)
        sources = sorted({s for d in doc["days"] for s in d["kwh_by_source"]})
        markets = sorted({m for d in doc["days"] for m in d["revenue_by_market"]})
        w.writerow(["day", "revenue", "energy_cost", "net", "local_value",
                    *[f"revenue_{m}" for m in markets], *[f"kwh_{s}" for s in sources]])
        for d in doc["days"]:
            w.writerow([d["day"], d["revenue"], d["energy_cost"], d["net"], d["local_value"],
                        *[d["revenue_by_market"].get(m, 0) for m in markets],
                        *[d["kwh_by_source"].get(s, 0) for s in sources]])
        name = f"sunrig-history-{doc['from']}-{doc['to']}.csv"
        return Response(out.getvalue(), content_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/api/<name>")
    def api_view(name: str):
        return jsonify({"ok": True, **view(name)})

    actions = actions or {}

    def api_action(name: str):
        body = json_body()
        if not isinstance(body, dict):
            abort(400, "send a JSON object")
        result = actions[name](body)
        return jsonify(result), (200 if result.get("ok") else 400)

    if actions:  # only the names that exist: POST elsewhere stays "method not allowed"
        names = ", ".join(f'"{n}"' for n in actions)
        app.add_url_rule(f"/api/<any({names}):name>", "api_action", api_action,
                         methods=["POST"])

    def page(name: str):
        return lambda: render_template(f"{name}.html", s=status())

    for name in ("plan", "history", "payback", "local", "settings"):
        app.add_url_rule(f"/{name}", f"{name}_page", page(name))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if exc.code == 413:  # refused like any other hostile body, saying what the limit is
            exc = BadRequest(f"the body is larger than {MAX_BODY_BYTES // 1024} KiB")
        if request.path.startswith("/api/") or request.method in CHANGES or request.is_json:
            return jsonify({"ok": False, "error": exc.description}), exc.code
        return exc

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):
        app.logger.exception("request %s failed", request.path)
        why = str(exc) if isinstance(exc, NotJsonError) else f"internal error: {type(exc).__name__}"
        if request.path.startswith("/api/") or request.method in CHANGES:
            return jsonify({"ok": False, "error": why}), 500
        return why, 500, {"Content-Type": "text/plain; charset=utf-8"}

    return app


def _text(value: object) -> str:
    """A form or JSON field as text: a number, list or object where text belongs is no text."""
    return value if isinstance(value, str) else ""
