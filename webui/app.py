"""Flask app factory: the dashboard page and the JSON API. No module-level state."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, abort, jsonify, redirect, render_template, request, session
from werkzeug.exceptions import HTTPException

from webui import metrics
from webui.auth import CHANGES, MIN_PASSWORD, Auth, AuthError

OPEN_PATHS = ("/login", "/setup", "/static/", "/api/session")


def create_app(status: Callable[[], dict[str, Any]], auth: Auth | None = None,
               open_reading: bool = True,
               views: dict[str, Callable[[dict], dict[str, Any]]] | None = None,
               actions: dict[str, Callable[[dict], dict[str, Any]]] | None = None) -> Flask:
    """`status` returns the agent's live state (see node.status); the app only presents it.
    `auth` guards changes (and reading, unless `open_reading`: a server beyond localhost);
    without it no change is accepted at all."""
    app = Flask(__name__)
    app.json.sort_keys = False
    app.secret_key = auth.session_key if auth else b"no-changes-accepted"
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Strict")
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
            return redirect(f"/login?next={request.path}")
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
                               next=request.args.get("next", "/"), min_len=MIN_PASSWORD)

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
        data = request.get_json(silent=True) or request.form
        if not Auth.csrf_ok(session.get("csrf"), request.headers.get("X-CSRF-Token")
                            or data.get("csrf_token")):
            abort(403, "missing or wrong CSRF token")
        password = str(data.get("password") or "")
        try:
            if setting:
                if auth.has_password:
                    raise AuthError("a password is set already; log in instead")
                auth.set_password(password)
            else:
                auth.check(password, request.remote_addr or "?")
        except AuthError as exc:
            code = 429 if auth.locked_out(request.remote_addr or "?") else 400 if setting else 401
            if request.is_json:
                return jsonify({"ok": False, "error": str(exc)}), code
            return render_template("login.html", setup=setting, csrf=session["csrf"],
                                   error=str(exc), next=data.get("next", "/"),
                                   min_len=MIN_PASSWORD), code
        session.clear()
        session["owner"], session["csrf"] = True, Auth.new_csrf()  # a fresh token per login
        return _done(str(data.get("next") or "/"))

    def _done(next_path: str):
        if request.is_json:
            return jsonify({"ok": True, "csrf_token": session.get("csrf")})
        local = next_path.startswith("/") and not next_path.startswith("//")
        return redirect(next_path if local else "/")  # never off to another site

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
        w.writerow(["day", "revenue", "energy_cost", "net", *[f"revenue_{m}" for m in markets],
                    *[f"kwh_{s}" for s in sources]])
        for d in doc["days"]:
            w.writerow([d["day"], d["revenue"], d["energy_cost"], d["net"],
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
        body = request.get_json(silent=True)
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

    for name in ("plan", "history", "payback", "settings"):
        app.add_url_rule(f"/{name}", f"{name}_page", page(name))

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if request.path.startswith("/api/") or request.method in CHANGES or request.is_json:
            return jsonify({"ok": False, "error": exc.description}), exc.code
        return exc

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):
        app.logger.exception("request %s failed", request.path)
        if request.path.startswith("/api/"):
            return jsonify({"ok": False, "error": f"internal error: {type(exc).__name__}"}), 500
        return "internal error", 500

    return app
