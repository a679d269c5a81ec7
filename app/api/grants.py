"""Routes of the login methods. A method's token view subclasses `GrantView`, naming its grant
and its path; its `GrantPlugin` (app.registry) lists its views; `build_auth_blueprint` routes
the enabled ones for one app, so a disabled grant has no route and no place in the OpenAPI
document.
"""

from __future__ import annotations

from typing import ClassVar

from flask import Response, current_app
from flask.views import MethodView

from app.api.helpers import json_response
from app.api.ratelimit import client_ip
from app.api.security import current_context, request_credentials
from app.grants.base import BaseGrant, TokenRequest
from app.openapi import Blueprint
from app.registry import GrantPlugin


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


def build_auth_blueprint(grants: list[GrantPlugin]) -> Blueprint:
    """The per-app blueprint of the enabled login methods (`Registry.enable_grants`): a grant
    not enabled has no route and no place in the OpenAPI document, installed or not."""
    blp = Blueprint("auth", __name__, url_prefix="/api/v1",
                    description="Sign-in: each login method trades proof for a session and tokens.")
    for plugin in grants:
        for view in plugin.views:
            blp.route(view.rule)(view)  # type: ignore[attr-defined]  # checked by Registry.register
    return blp
