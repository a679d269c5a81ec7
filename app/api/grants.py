"""Routes of the login methods. A method's view subclasses `GrantView`, naming its grant and
its path; `build_auth_blueprint` routes the enabled ones for one app, so a disabled grant has
no route and no place in the OpenAPI document.
"""

from __future__ import annotations

from typing import ClassVar

from flask import Response, current_app
from flask.views import MethodView

from app.api.helpers import json_response
from app.api.security import current_context, request_credentials
from app.config import ConfigError, Settings
from app.grants.base import BaseGrant, TokenRequest
from app.openapi import Blueprint
from app.ratelimit import client_ip


class GrantView(MethodView):
    """A login method's endpoint: `grant` handles it, at `rule` under /api/v1."""

    grant: ClassVar[type[BaseGrant]]
    rule: ClassVar[str]

    @classmethod
    def token_response(cls, data: dict | None = None) -> Response:
        """Run the grant on this request and answer its body (wire form) with its status."""
        token_request = TokenRequest(ctx=current_context(), data=data or {}, client_ip=client_ip(),
                                     credentials=request_credentials())
        status, body = current_app.extensions["usher"].auth.create_token_response(cls.grant.GRANT_TYPE,
                                                                                  token_request)
        return json_response(body, status)


def grant_views() -> list[type[GrantView]]:
    """Every declared login method (their modules are imported with their blueprint)."""
    found, pending = [], list(GrantView.__subclasses__())
    while pending:
        view = pending.pop(0)
        pending.extend(view.__subclasses__())
        if "grant" in vars(view):
            found.append(view)
    return found


def build_auth_blueprint(settings: Settings) -> tuple[Blueprint, list[type[BaseGrant]]]:
    """The per-app blueprint of enabled login methods, and their grants (for the registry)."""
    views = grant_views()
    unknown = set(settings.enabled_grants) - {view.grant.GRANT_TYPE for view in views}
    if unknown:
        raise ConfigError(f"ENABLED_GRANTS names unknown grant types {sorted(unknown)}; known: "
                          + ", ".join(sorted(view.grant.GRANT_TYPE for view in views)))
    blp = Blueprint("auth", __name__, url_prefix="/api/v1",
                    description="Sign-in: each login method trades proof for a session and tokens.")
    enabled = []
    for view in views:
        if settings.grant_enabled(view.grant.GRANT_TYPE):
            blp.route(view.rule)(view)
            enabled.append(view.grant)
    return blp, enabled
