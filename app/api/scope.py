"""Lends each app's `AppScope` (app/scope.py) to the code below the API layer.

The scope is looked up in Flask's own context each time (`current_app` when an app context is
pushed, else none), so `app.scope.current()` answers for the same app as `flask.current_app`
would, in requests, CLI commands and jobs alike, nested contexts included, and nothing is left
behind when a context's teardown fails.
"""

from __future__ import annotations

from flask import Flask, current_app, has_app_context

from app import scope
from app.scope import AppScope

_EXTENSION = "usher_scope"


def _current_scope() -> AppScope | None:
    return current_app.extensions.get(_EXTENSION) if has_app_context() else None


def bind_scope(app: Flask, app_scope: AppScope) -> None:
    """Lend `app_scope` to the code below the API layer inside this app's contexts."""
    app.extensions[_EXTENSION] = app_scope
    scope.resolve_with(_current_scope)
