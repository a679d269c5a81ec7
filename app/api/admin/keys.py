from __future__ import annotations

from flask.views import MethodView

from app.api.admin import blp
from app.api.helpers import app_secret, db_session, now, tenant_get, transaction
from app.api.security import current_context, requires
from app.models import ApiKey
from app.openapi import ErrorSchema
from app.schemas.admin import KeyCreate, KeyCreated, KeyList, KeyOut, KeyRoll
from app.security.scopes import key_scopes
from app.services.orgs import (
    active_key,
    create_key_for,
    live_keys_query,
    revoke_key_for,
    roll_key_for,
)


def key_view(key: ApiKey, value: str | None = None) -> dict:
    view = {c: getattr(key, c) for c in ("id", "type", "mode", "last4", "created_at", "expires_at", "last_used_at")}
    view["scopes"] = sorted(key_scopes(key.type, key.scopes))
    if value is not None:
        view["key"] = value
    return view


@blp.route("/keys")
class Keys(MethodView):
    @requires("secret", scope="keys:write")
    @blp.response(200, KeyList)
    def get(self):
        """List the API keys of this mode

        Never shows a secret value; revoked and expired keys are left out. Each key shows its
        `scopes`.
        """
        ctx = current_context()
        return {"data": [key_view(k) for k in db_session().scalars(live_keys_query(ctx.organization_id, ctx.mode,
                                                                                       now()))]}

    @requires("secret", scope="keys:write")
    @blp.arguments(KeyCreate(), example={"type": "restricted", "scopes": ["experiences:read", "queues:read"]})
    @blp.response(201, KeyCreated)
    def post(self, data):
        """Create a key

        The answer carries the value (`key`) this once; only a hash of a secret or restricted
        key is kept. A restricted key (`rk_…`) may do only its `scopes`; a key can only create
        keys whose scopes are within its own (a secret key holds every scope).
        """
        with transaction() as session:
            key, value = create_key_for(session, app_secret(), current_context(), data["type"], data.get("scopes"),
                                        now())
        return key_view(key, value)


@blp.route("/keys/<string:key_id>/roll")
class RollKey(MethodView):
    @requires("secret", scope="keys:write")
    @blp.arguments(KeyRoll(), example={"expiresIn": 3600})
    @blp.response(201, KeyCreated)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown key")
    def post(self, data, key_id):
        """Roll a key

        Issues a new value; the old one keeps working for `expiresIn` seconds (0 = now), then
        fails exactly like an unknown key. Only keys whose scopes are within the caller's can be
        rolled (403 `insufficient_scope` otherwise).
        """
        ctx = current_context()
        with transaction() as session:
            new_key, value = roll_key_for(session, app_secret(), ctx, tenant_get(session, ApiKey, key_id, ctx),
                                          data["expires_in"], now())
        return key_view(new_key, value)


@blp.route("/keys/<string:key_id>")
class KeyById(MethodView):
    @requires("secret", scope="keys:write")
    @blp.response(200, KeyOut)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown key")
    def get(self, key_id):
        """Get a key

        Its type, mode, last four characters, scopes and dates; never its value.
        """
        return key_view(_active_key(db_session(), key_id, current_context()))

    @requires("secret", scope="keys:write")
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown key")
    @blp.alt_response(400, schema=ErrorSchema, description="`validation_error`: the mode's last secret key")
    @blp.alt_response(409, schema=ErrorSchema, description="The key is the one making this request")
    def delete(self, key_id):
        """Revoke a key

        It fails like an unknown key from now on. A key cannot revoke itself (roll it instead),
        revokes only keys whose scopes are within its own (as creating and rolling; 403
        `insufficient_scope` otherwise), and never the mode's last secret key (400
        `validation_error`), so a merchant cannot lock itself out, by mistake or through a
        leaked restricted key. `flask --app wsgi org keys create` issues a key for an existing
        organization.
        """
        ctx = current_context()
        with transaction() as session:
            revoke_key_for(session, ctx, tenant_get(session, ApiKey, key_id, ctx), now())


def _active_key(session, key_id: str, ctx) -> ApiKey:
    return active_key(tenant_get(session, ApiKey, key_id, ctx), now())
