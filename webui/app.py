"""Flask app factory: the dashboard page and the JSON API. No module-level state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, jsonify, render_template, request
from werkzeug.exceptions import HTTPException


def create_app(status: Callable[[], dict[str, Any]]) -> Flask:
    """`status` returns the agent's live state (see node.status); the app only presents it."""
    app = Flask(__name__)
    app.json.sort_keys = False

    @app.get("/")
    def overview():
        return render_template("overview.html", s=status())

    @app.get("/api/status")
    def api_status():
        return jsonify({"ok": True, **status()})

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        if request.path.startswith("/api/"):
            return jsonify({"ok": False, "error": exc.description}), exc.code
        return exc

    @app.errorhandler(Exception)
    def internal_error(exc: Exception):
        app.logger.exception("request %s failed", request.path)
        if request.path.startswith("/api/"):
            return jsonify({"ok": False, "error": f"internal error: {type(exc).__name__}"}), 500
        return "internal error", 500

    return app
