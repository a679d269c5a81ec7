"""Routes of the login methods. A method's token view subclasses `GrantView`, naming its grant
and its path; its `GrantPlugin` (app.registry) lists its views; `build_auth_blueprint` routes
the enabled ones for one app, so a disabled grant has no route and no place in the OpenAPI
document.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

from flask import Response, current_app
from flask.views import MethodView

from app.api.helpers import json_response
from app.api.ratelimit import client_ip, client_key
from app.api.security import current_context, request_credentials
from app.grants.base import BaseGrant, TokenRequest
from app.grants.external import ExternalExchangeGrant
from app.openapi import Blueprint
from app.registry import GrantPlugin
from app.security.callers import RequestContext

if TYPE_CHECKING:
    from app.state import Usher


def _exchange_limit(usher: Usher, ctx: RequestContext) -> None:
    usher.limits.hit("exchange_ip", usher.settings.exchange_rate_limit, ctx.organization_id, ctx.mode, client_key())


#: The limits of a grant that every door to it applies (its JSON route and `/oauth/token`), with
#: the same keys: one budget whichever dialect the client speaks.
GRANT_LIMITS: dict[str, Callable[[Usher, RequestContext], None]] = {
    ExternalExchangeGrant.GRANT_TYPE: _exchange_limit,
}


def apply_grant_limits(usher: Usher, grant_type: str, ctx: RequestContext) -> None:
    """The grant's own limits (`GRANT_LIMITS`), before it runs: 429 `rate_limited` past one."""
    limit = GRANT_LIMITS.get(grant_type)
    if limit is not None:
        limit(usher, ctx)


class GrantView(MethodView):
    """A login method's endpoint: `grant` handles it, at `rule` under /api/v1."""

    grant: ClassVar[type[BaseGrant]]
    rule: ClassVar[str]

    @classmethod
    def token_response(cls, data: dict | None = None) -> Response:
        """Run the grant on this request, after its limits (`GRANT_LIMITS`), and answer its body
        (wire form) with its status."""
        ctx, usher = current_context(), current_app.extensions["usher"]
        token_request = TokenRequest(ctx=ctx, data=data or {}, client_ip=client_ip(),
                                     credentials=request_credentials())
        apply_grant_limits(usher, cls.grant.GRANT_TYPE, ctx)
        status, body = usher.auth.create_token_response(cls.grant.GRANT_TYPE, token_request)
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
