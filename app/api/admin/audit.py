from __future__ import annotations

from flask.views import MethodView
from marshmallow import fields, validate

from app.api.admin import blp
from app.api.helpers import db_session
from app.api.security import current_context, requires
from app.schemas.common import PageArgs, Schema, always_sent, page_schema
from app.services import audit


class AuditEventArgs(PageArgs):
    type = fields.String(validate=validate.Length(1, 64), metadata={"description": "Only events of this type.",
                                                                    "example": "key.rolled"})


@always_sent()
class Party(Schema):
    type = fields.String(metadata={"example": "key"})
    id = fields.String(allow_none=True, metadata={"example": "key_01HXYZ123456789ABCDEFGHJK"})


@always_sent()
class AuditEventOut(Schema):
    id = fields.String(metadata={"example": "evt_01HXYZ123456789ABCDEFGHJK"})
    type = fields.String(metadata={"example": "settings.updated"})
    actor = fields.Nested(Party, metadata={"description": "`key` (its id), `cli`, `consumer` (its id) or `system`."})
    target = fields.Nested(Party, metadata={"description": "What changed (type and id)."})
    details = fields.Dict(metadata={"description": "What changed (settings: each field old → new). Never a key "
                                                   "value, token or code."})
    created_at = fields.String(data_key="createdAt", metadata={
        "description": "ISO 8601 UTC to the microsecond, exactly as hashed.", "example": "2024-12-01T09:00:00.123456Z"})
    hash = fields.String(metadata={"description": "SHA-256 (hex) of `prevHash` followed by the canonical JSON of "
                                                 "this event without `hash` (sorted keys, no spaces)."})
    prev_hash = fields.String(data_key="prevHash", allow_none=True,
                              metadata={"description": "The previous event's hash in this organization and mode "
                                                       "(null for the first)."})


AuditEventPage = page_schema(AuditEventOut, "AuditEventPage")


@blp.route("/audit-events")
class AuditEvents(MethodView):
    @requires("secret", scope="audit:read")
    @blp.arguments(AuditEventArgs(), location="query")
    @blp.response(200, AuditEventPage)
    def get(self, args):
        """List audit events

        Every change made with a key or the CLI and every security event of this organization
        and mode, newest first; `startingAfter` is the last id of the previous page. The log is
        append-only and hash-chained (see `hash`); `flask --app wsgi audit verify` checks it.
        """
        ctx = current_context()
        result = audit.list_events(db_session(), ctx.organization_id, ctx.mode, args["limit"],
                                   args.get("starting_after"), args.get("type"))
        result["data"] = [{**event, "created_at": event.pop("createdAt"), "prev_hash": event.pop("prevHash")}
                          for event in result["data"]]
        return result
