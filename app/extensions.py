"""Unbound extension singletons, bound to an app by `init_app` in `create_app`.

Imports nothing of the app, so any module can import these without cycles.
"""

from flask import request
from flask_limiter import Limiter

from app.openapi import Api


def client_ip() -> str:
    """The client address after ProxyFix: only trusted hops' X-Forwarded-For is believed."""
    return request.remote_addr or "unknown"


api = Api()
limiter = Limiter(key_func=client_ip, default_limits=[], headers_enabled=True)
