"""The view decorator that declares and enforces a view's credential.

One decorator both resolves the caller (before the view runs) and writes the security
requirement into the OpenAPI document, so the two cannot drift apart.
"""

from __future__ import annotations

from functools import wraps

from flask import current_app, g, request

from app.cors import check_origin
from app.openapi import Blueprint
from app.security.callers import RequestContext
from app.security.credentials import CredentialKind, Credentials

SECURITY_REQUIREMENTS: dict[CredentialKind, list[dict[str, list[str]]]] = {
    CredentialKind.PUBLISHABLE: [{"publishableKey": []}],
    CredentialKind.SECRET: [{"secretKey": []}],
    CredentialKind.ACCESS: [{"publishableKey": [], "accessToken": []}],
    CredentialKind.TOKEN: [{"accessToken": []}],
}


def request_credentials() -> Credentials:
    """The request's credentials, parsed once."""
    credentials = g.get("usher_credentials")
    if credentials is None:
        credentials = g.usher_credentials = Credentials.from_request(request)
    return credentials


def current_context() -> RequestContext:
    return g.usher_ctx


def requires(*names: str):
    """Decorator: the view needs one of these credentials (`CredentialKind` values).

    With several kinds, a secret key in `Authorization` selects "secret", else the first other.
    """
    kinds = [CredentialKind(name) for name in names]
    others = [kind for kind in kinds if kind is not CredentialKind.SECRET]

    def choose(credentials: Credentials) -> CredentialKind:
        if len(kinds) > 1 and CredentialKind.SECRET in kinds:
            if credentials.bearer is not None and credentials.bearer.startswith("sk_"):
                return CredentialKind.SECRET
            return others[0]
        return kinds[0]

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            credentials = request_credentials()
            usher = current_app.extensions["usher"]
            kind = choose(credentials)
            ctx = g.usher_ctx = usher.callers.resolve(usher.reader(), kind, credentials)
            check_origin(ctx.organization.allowed_origins, kind)  # the browser's origin, before any work
            return view(*args, **kwargs)

        security = [req for kind in kinds for req in SECURITY_REQUIREMENTS[kind]]
        return Blueprint.doc(security=security)(wrapper)

    return decorator
