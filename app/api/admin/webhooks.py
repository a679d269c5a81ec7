"""Webhook endpoints of the caller's organization and mode (Events out)."""

from __future__ import annotations

from flask import current_app
from flask.views import MethodView

from app.api.admin import blp
from app.api.helpers import db_session, tenant_get
from app.api.security import current_context, requires
from app.models import WebhookEndpoint
from app.openapi import ErrorSchema
from app.schemas.common import PageArgs
from app.schemas.webhooks import (
    DeliveryArgs,
    DeliveryList,
    SecretRotation,
    WebhookEndpointCreated,
    WebhookEndpointIn,
    WebhookEndpointOut,
    WebhookEndpointPage,
)
from app.services.paging import page
from app.services.webhook_endpoints import (
    create_endpoint_for,
    delete_endpoint_for,
    endpoint_deliveries,
    endpoints_query,
    rotate_secret_for,
)

NO_STORE = {"Cache-Control": "no-store"}


def _usher():
    return current_app.extensions["usher"]


def _shown_once(endpoint: WebhookEndpoint, secret: str):
    return {"id": endpoint.id, "url": endpoint.url, "events": endpoint.events, "description": endpoint.description,
            "created_at": endpoint.created_at, "secret": secret}, 201, NO_STORE


@blp.route("/webhook-endpoints")
class WebhookEndpoints(MethodView):
    @requires("secret", scope="webhooks:write")
    @blp.arguments(PageArgs(), location="query")
    @blp.response(200, WebhookEndpointPage)
    def get(self, args):
        """List webhook endpoints (without secrets)

        The endpoints of the caller's organization and mode, oldest first; keyset paging.
        """
        return page(db_session(), endpoints_query(current_context()), WebhookEndpoint.id, args["limit"],
                    args.get("starting_after"))

    @requires("secret", scope="webhooks:write")
    @blp.arguments(WebhookEndpointIn(), example={"url": "https://shop.example.com/usher/webhooks",
                                                 "events": ["session.created", "refresh_token.reused"]})
    @blp.response(201, WebhookEndpointCreated, headers={"Cache-Control": {"schema": {"type": "string"},
                                                                          "description": "`no-store`"}})
    def post(self, data):
        """Create a webhook endpoint

        The answer carries the signing `secret` this once (`Cache-Control: no-store`). In live
        mode the URL must be `https` and resolve to public addresses only (checked now and at
        every delivery); test mode also allows `http` and loopback. Redirects are never followed.
        """
        return _shown_once(*create_endpoint_for(_usher(), _usher().events, current_context(), data))


@blp.route("/webhook-endpoints/<string:endpoint_id>")
class WebhookEndpointById(MethodView):
    @requires("secret", scope="webhooks:write")
    @blp.response(200, WebhookEndpointOut)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown endpoint")
    def get(self, endpoint_id):
        """Get a webhook endpoint (without its secret)

        Another organization's or mode's endpoint id answers 404, like an unknown one.
        """
        return tenant_get(db_session(), WebhookEndpoint, endpoint_id, current_context())

    @requires("secret", scope="webhooks:write")
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown endpoint")
    def delete(self, endpoint_id):
        """Delete a webhook endpoint

        Nothing more is sent to it, including retries still pending; its deliveries go with it.
        """
        delete_endpoint_for(_usher(), _usher().events, current_context(), endpoint_id)


@blp.route("/webhook-endpoints/<string:endpoint_id>/rotate-secret")
class RotateWebhookSecret(MethodView):
    @requires("secret", scope="webhooks:write")
    @blp.arguments(SecretRotation(), example={"expiresIn": 86400})
    @blp.response(201, WebhookEndpointCreated)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown endpoint")
    def post(self, data, endpoint_id):
        """Rotate an endpoint's signing secret

        The new `secret` is shown this once. For `expiresIn` seconds deliveries carry two
        signatures (`webhook-signature: v1,<new> v1,<old>`), so the receiver can switch at leisure.
        """
        return _shown_once(*rotate_secret_for(_usher(), current_context(), endpoint_id, data["expires_in"]))


@blp.route("/webhook-endpoints/<string:endpoint_id>/deliveries")
class WebhookDeliveries(MethodView):
    @requires("secret", scope="webhooks:write")
    @blp.arguments(DeliveryArgs(), location="query")
    @blp.response(200, DeliveryList)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown endpoint")
    def get(self, args, endpoint_id):
        """List an endpoint's deliveries, newest first

        Each attempt is counted (`attempts`, `lastResponseStatus`); a failing delivery is retried
        after 5 s, 5 min, 30 min, 2 h, 5 h and 10 h (`nextAttemptAt`), then marked `failed`.
        """
        _, deliveries = endpoint_deliveries(db_session(), current_context(), endpoint_id, args["limit"])
        return {"data": deliveries}
