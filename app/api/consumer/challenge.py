"""Bot defense at the edge: the challenge a page solves, and the guard of protected routes."""

from __future__ import annotations

from flask import current_app, request
from flask.views import MethodView

from app.api.consumer import blp
from app.api.helpers import json_response, now
from app.api.ratelimit import client_ip
from app.api.security import current_context, requires
from app.botdefense import HEADER, Attempt
from app.schemas.auth import ChallengeOut

#: The OpenAPI description of a protected route's proof header.
CHALLENGE_HEADER = {"in": "header", "name": HEADER, "required": False, "schema": {"type": "string"},
                    "description": "The solved challenge, when the mode's bot defense protects this route "
                                   "(see `GET /auth/challenge`): ALTCHA's base64 JSON payload, or the "
                                   "Turnstile/hCaptcha widget's token."}
CHALLENGE_REFUSED = ("`challenge_required`: the mode's bot defense protects this route and the "
                     "`X-Usher-Challenge` proof is missing, wrong, expired or already used")


def _attempt() -> Attempt:
    ctx = current_context()
    return Attempt(ctx.organization_id, ctx.mode, ctx.organization, client_ip(), now())


def guard(route: str) -> None:
    """Before any work on a protected route (after the per-address limit): 403
    `challenge_required` unless `X-Usher-Challenge` carries a good, unused proof."""
    current_app.extensions["usher"].bot_defense.guard(route, _attempt(), request.headers.get(HEADER))


@blp.route("/auth/challenge")
class Challenge(MethodView):
    @requires("publishable")
    @blp.response(200, ChallengeOut)
    def get(self):
        """Get a bot-defense challenge

        What the mode's bot defense asks of protected routes (`botDefenseRoutes`): nothing
        (`off`), a Turnstile or hCaptcha widget (`siteKey`), or an ALTCHA proof of work to solve
        (`challenge`, valid 5 minutes, its solution accepted once). Send the proof in
        `X-Usher-Challenge`. Never cached.
        """
        response = json_response(current_app.extensions["usher"].bot_defense.challenge(_attempt()))
        response.headers["Cache-Control"] = "no-store"
        return response
