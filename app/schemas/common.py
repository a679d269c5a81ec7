from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import marshmallow as ma
from marshmallow import ValidationError, fields, pre_load, validate


def _nul_fields(data, path: str = "") -> list[str]:
    if isinstance(data, str):
        return [path or "_schema"] if "\x00" in data else []
    if isinstance(data, Mapping):  # a dict, or webargs' proxy of the query string
        return [found for key, value in data.items()
                for found in ([str(key)] if "\x00" in str(key) else []) + _nul_fields(value, path or str(key))]
    if isinstance(data, list):
        return [found for value in data for found in _nul_fields(value, path)]
    return []


class Schema(ma.Schema):
    class Meta:
        unknown = ma.RAISE
        ordered = True

    @pre_load
    def _no_nul_characters(self, data, **_kwargs):
        """No input may carry a NUL character (PostgreSQL cannot store one in text)."""
        fields_with_nul = _nul_fields(data)
        if fields_with_nul:
            raise ValidationError({name: ["Must not contain NUL characters."] for name in fields_with_nul})
        return data


def iso_instant(value: datetime) -> str:
    """ISO 8601 in UTC with `Z`, to the second, the year always four digits."""
    return value.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat() + "Z"


class Instant(fields.AwareDateTime):
    """An instant in UTC, written ISO 8601 with `Z`; any offset accepted on input."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {}).setdefault("example", "2024-12-01T09:00:00Z")
        super().__init__(format="iso", **kwargs)

    def _serialize(self, value, attr, obj, **kwargs):
        if value is None:
            return None
        return iso_instant(value)

    def _deserialize(self, value, attr, data, **kwargs) -> datetime:
        parsed = super()._deserialize(value, attr, data, **kwargs)
        try:  # 0001-01-01T00:00:00+14:00 is before year 1 in UTC; 9999-12-31T23:59:59-01:00 after 9999
            return parsed.astimezone(UTC)
        except OverflowError:
            raise ValidationError("Out of range once converted to UTC.") from None


class AlwaysNull(fields.Constant):
    """A field reserved by the seed and always null: typed `null` in the document."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {})["type"] = "null"
        super().__init__(None, **kwargs)
        self.allow_none = False  # output only; keeps apispec from adding a second "null"


class PageArgs(Schema):
    limit = fields.Integer(load_default=20, validate=validate.Range(1, 100),
                           metadata={"description": "Items per page (1–100)."})
    starting_after = fields.String(data_key="startingAfter", validate=validate.Length(1, 40),
                                   metadata={"description": "The last id of the previous page."})


#: The class attribute where `always_sent` records the fields a body may leave out. The OpenAPI
#: document reads it (`app.openapi.ContractPlugin`); subclasses inherit it, as a subclass of a
#: response schema writes responses too.
ALWAYS_SENT_ATTRIBUTE = "usher_always_sent_optional"


def always_sent(*optional: str) -> Callable[[type[ma.Schema]], type[ma.Schema]]:
    """Class decorator of a response schema: every field is in every body the API writes, so the
    document lists it as `required` and generated clients (openapi-typescript, openapi-python-client)
    type it as present; `optional` names the fields a body may leave out. Only recorded on the
    class (`always_sent_optional`): the document is written from it, and the fields stay as
    declared, so loading is unchanged and a request schema sharing them is untouched."""

    def decorate(cls: type[ma.Schema]) -> type[ma.Schema]:
        unknown = set(optional) - set(cls().declared_fields)
        assert not unknown, f"{cls.__name__} has no fields {unknown}"
        setattr(cls, ALWAYS_SENT_ATTRIBUTE, frozenset(optional))
        return cls

    return decorate


def always_sent_optional(schema: type[ma.Schema] | ma.Schema) -> frozenset[str] | None:
    """The fields a body of this response schema may leave out (`always_sent`), or None if the
    schema is not declared always sent."""
    optional = getattr(schema, ALWAYS_SENT_ATTRIBUTE, None)
    return optional if isinstance(optional, frozenset) else None


def page_schema(item: type[ma.Schema], name: str) -> type[ma.Schema]:
    return type(name, (Schema,), {
        "data": fields.List(fields.Nested(item), required=True),
        "has_more": fields.Boolean(data_key="hasMore", required=True,
                                   metadata={"description": "Pass the last id as `startingAfter` for more."}),
    })
