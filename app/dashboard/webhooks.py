"""Webhooks: the tenant's endpoints, one endpoint's deliveries, and creating, rotating and
deleting them (a new signing secret is shown once: held for the next page in the transaction
that makes it, so no endpoint or rotation commits with a secret nobody saw)."""

from __future__ import annotations

from flask import current_app, flash, g, redirect, render_template, request, url_for

from app.api.helpers import db_session, now, tenant_get
from app.dashboard.common import (
    bp,
    ctx,
    holding,
    load,
    requires_scope,
    take_reveal,
    unconfirmed,
    usher,
    when,
)
from app.errors import ApiError
from app.models import WebhookEndpoint
from app.schemas.common import PageArgs
from app.schemas.webhooks import DeliveryArgs, SecretRotation, WebhookEndpointIn
from app.services.webhook_endpoints import (
    create_endpoint_for,
    delete_endpoint_for,
    endpoint_deliveries,
    endpoints_page,
    rotate_secret_for,
)


def _webhooks_page(status: int = 200, **errors):
    """The endpoints of the tenant, oldest first, page by page (the `GET /webhook-endpoints`
    query), with the forms; `errors` are a refused form's, shown next to its fields."""
    form = {"startingAfter": request.args["startingAfter"]} if request.args.get("startingAfter") else {}
    args, page_errors = load(PageArgs(), form)
    result = (endpoints_page(db_session(), ctx(), args["limit"], args.get("starting_after"))
              if args is not None else {"data": [], "has_more": False})
    return render_template("dashboard/webhooks.html", result=result, page_errors=page_errors,
                           reveal=take_reveal("webhook"),
                           event_types=current_app.extensions["usher_registry"].event_types,
                           form=g.get("webhook_form", {}), create_errors=errors.get("create", {}),
                           rotate_errors=errors.get("rotate", {}),
                           private_targets=usher().settings.private_webhook_targets_allowed), \
        400 if page_errors else status


@bp.route("/webhooks")
@requires_scope("webhooks:write")
def webhooks():
    return _webhooks_page()


@bp.route("/webhooks", methods=["POST"])
@requires_scope("webhooks:write")
def create_webhook_view():
    """Validated by the API's `WebhookEndpointIn`, then its URL rules (`UrlRefused`'s reason)."""
    form = {"url": request.form.get("url", "").strip(), "events": request.form.getlist("events")}
    if request.form.get("description", "").strip():
        form["description"] = request.form["description"].strip()
    data, errors = load(WebhookEndpointIn(), form)
    if data is not None:
        try:
            endpoint, _ = create_endpoint_for(usher(), usher().events, ctx(), data, reveal=holding("webhook"))
        except ApiError as error:
            if error.error != "validation_error":
                raise
            errors = error.details or {}
    if errors:
        g.webhook_form = form
        return _webhooks_page(400, create=errors)
    flash(f"Created the endpoint for {endpoint.url}.", "info")
    return redirect(url_for("dashboard.webhooks"), 303)


@bp.route("/webhooks/<endpoint_id>")
@requires_scope("webhooks:write")
def webhook(endpoint_id: str):
    """An endpoint and its latest deliveries (the `GET …/deliveries` query)."""
    args = DeliveryArgs().load({})
    endpoint, deliveries = endpoint_deliveries(db_session(), ctx(), endpoint_id, args["limit"])
    return render_template("dashboard/webhook.html", endpoint=endpoint, deliveries=deliveries, now=now())


@bp.route("/webhooks/<endpoint_id>/rotate-secret", methods=["POST"])
@requires_scope("webhooks:write")
def rotate_webhook_secret_view(endpoint_id: str):
    data, errors = load(SecretRotation(), {"expiresIn": request.form.get("expiresIn", "")})
    if data is None:
        return _webhooks_page(400, rotate={endpoint_id: errors})
    endpoint, _ = rotate_secret_for(usher(), ctx(), endpoint_id, data["expires_in"], reveal=holding("webhook"))
    until = endpoint.previous_expires_at
    flash(f"Rotated the signing secret of {endpoint.url}. "
          + (f"The old secret signs too until {when(until)}." if until and until > now()
             else "The old secret no longer signs."), "info")
    return redirect(url_for("dashboard.webhooks"), 303)


@bp.route("/webhooks/<endpoint_id>/delete", methods=["POST"])
@requires_scope("webhooks:write")
def delete_webhook_view(endpoint_id: str):
    target = tenant_get(db_session(), WebhookEndpoint, endpoint_id, ctx())
    asking = unconfirmed(f"Delete the endpoint for {target.url}?",
                         "It receives no more events, and its pending deliveries are dropped.", "Delete",
                         url_for("dashboard.webhooks"))
    if asking is not None:
        return asking
    endpoint = delete_endpoint_for(usher(), usher().events, ctx(), endpoint_id)
    flash(f"Deleted the endpoint for {endpoint.url}.", "info")
    return redirect(url_for("dashboard.webhooks"), 303)
