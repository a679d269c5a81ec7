from __future__ import annotations

from flask.views import MethodView

from app.api.admin import blp
from app.api.helpers import app_secret, db_session, now, tenant_get, transaction
from app.api.security import current_context, requires
from app.errors import ApiError
from app.models import ApiKey
from app.openapi import ErrorSchema
from app.schemas.admin import KeyCreate, KeyCreated, KeyList, KeyOut, KeyRoll
from app.services.orgs import create_key, live_keys_query, roll_key


def _created(key: ApiKey, value: str) -> dict:
    return {**{c: getattr(key, c) for c in ("id", "type", "mode", "last4", "created_at", "expires_at",
                                            "last_used_at")}, "key": value}


@blp.route("/keys")
class Keys(MethodView):
    @requires("secret")
    @blp.response(200, KeyList)
    def get(self):
        """List the API keys of this mode

        Never shows a secret value; revoked and expired keys are left out.
        """
        ctx = current_context()
        return {"data": list(db_session().scalars(live_keys_query(ctx.organization_id, ctx.mode, now())))}

    @requires("secret")
    @blp.arguments(KeyCreate(), example={"type": "publishable"})
    @blp.response(201, KeyCreated)
    def post(self, data):
        """Create a key

        The answer carries the value (`key`) this once; only a hash of a secret key is kept.
        """
        ctx = current_context()
        with transaction() as session:
            key, value = create_key(session, app_secret(), ctx.organization_id, ctx.mode, data["type"])
        return _created(key, value)


@blp.route("/keys/<string:key_id>/roll")
class RollKey(MethodView):
    @requires("secret")
    @blp.arguments(KeyRoll(), example={"expiresIn": 3600})
    @blp.response(201, KeyCreated)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown key")
    def post(self, data, key_id):
        """Roll a key

        Issues a new value; the old one keeps working for `expiresIn` seconds (0 = now), then
        fails exactly like an unknown key.
        """
        ctx = current_context()
        with transaction() as session:
            key = _active_key(session, key_id, ctx)
            new_key, value = roll_key(session, app_secret(), key, data["expires_in"], now())
        return _created(new_key, value)


@blp.route("/keys/<string:key_id>")
class KeyById(MethodView):
    @requires("secret")
    @blp.response(200, KeyOut)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown key")
    def get(self, key_id):
        """Get a key

        Its type, mode, last four characters and dates; never its value.
        """
        return _active_key(db_session(), key_id, current_context())

    @requires("secret")
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema, description="Unknown key")
    @blp.alt_response(409, schema=ErrorSchema, description="The key is the one making this request")
    def delete(self, key_id):
        """Revoke a key

        It fails like an unknown key from now on. A key cannot revoke itself (roll it instead),
        so a merchant cannot lock itself out by mistake.
        """
        ctx = current_context()
        if key_id == ctx.key_id:
            raise ApiError("conflict", "A key cannot revoke itself; use another secret key or roll it.")
        with transaction() as session:
            _active_key(session, key_id, ctx).revoked_at = now()


def _active_key(session, key_id: str, ctx) -> ApiKey:
    key = tenant_get(session, ApiKey, key_id, ctx)
    if key.revoked_at is not None or (key.expires_at is not None and key.expires_at <= now()):
        raise ApiError("not_found")
    return key
