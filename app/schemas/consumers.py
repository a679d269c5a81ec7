from __future__ import annotations

from marshmallow import fields, validate

from app.schemas.auth import SessionOut
from app.schemas.common import Instant, PageArgs, Schema, always_sent, page_schema


@always_sent()
class ExternalIdentityOut(Schema):
    provider = fields.String()
    issuer = fields.String()
    subject = fields.String()
    claims = fields.Dict()


@always_sent()
class ConsumerOut(Schema):
    id = fields.String(metadata={"example": "cons_01HXYZ123456789ABCDEFGHJK"})
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True, metadata={"description": "E.164"})
    external_identities = fields.List(fields.Nested(ExternalIdentityOut), data_key="externalIdentities")
    merged_into = fields.String(data_key="mergedInto", allow_none=True,
                                metadata={"description": "For an upgraded guest: the consumer it became."})
    created_at = Instant(data_key="createdAt")


ConsumerPage = page_schema(ConsumerOut, "ConsumerPage")


class ConsumerListArgs(PageArgs):
    email = fields.String(validate=validate.Length(1, 320))
    phone = fields.String(validate=validate.Length(1, 20))


class SessionList(Schema):
    data = fields.List(fields.Nested(SessionOut), required=True)
