"""What a request presents: its publishable key and its bearer value, read once at the edge.

Werkzeug parses `Authorization` (`request.authorization`); nothing else in Usher reads the
credential headers, so grants and services get plain values and never touch `flask.request`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from werkzeug import Request


class CredentialKind(enum.StrEnum):
    """The credential a view needs (the OpenAPI security schemes follow from it)."""

    PUBLISHABLE = "publishable"  # X-Publishable-Key
    SECRET = "secret"  # Authorization: Bearer sk_…
    ACCESS = "access"  # the publishable key and a consumer access token of its tenant
    TOKEN = "token"  # a consumer access token; the publishable key optional (the seed's logout)


@dataclass(frozen=True)
class Credentials:
    publishable_key: str | None = None
    bearer: str | None = None

    @classmethod
    def from_request(cls, request: Request) -> Credentials:
        auth = request.authorization
        bearer = auth.token.strip() if auth is not None and auth.type == "bearer" and auth.token else None
        return cls(publishable_key=request.headers.get("X-Publishable-Key") or None, bearer=bearer or None)
