"""Binds each app's `AppScope` (app/scope.py) to every Flask app context pushed for it.

Flask's `appcontext_pushed` / `appcontext_popped` signals pair each push with its pop, also for a
context pushed again or nested in another app's, so `app.scope.current()` answers for the same app
as `flask.current_app` would, in requests, CLI commands and jobs alike.
"""

from __future__ import annotations

from typing import Any

from flask import Flask, appcontext_popped, appcontext_pushed

from app import scope
from app.scope import AppScope

_EXTENSION = "usher_scope"


def _pushed(app: Flask, **_extra: Any) -> None:
    scope.enter(app.extensions.get(_EXTENSION))


def _popped(_app: Flask, **_extra: Any) -> None:
    scope.leave()


def bind_scope(app: Flask, app_scope: AppScope) -> None:
    """Lend `app_scope` to the code below the API layer inside this app's contexts."""
    app.extensions[_EXTENSION] = app_scope
    # Connected once for any sender (connecting the same function again is a no-op); the
    # functions are module globals, so blinker's weak references to them never die.
    appcontext_pushed.connect(_pushed)
    appcontext_popped.connect(_popped)
