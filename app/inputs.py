"""Hostile input stops here, as a 400 or 413 from the catalogue, before a schema sees it.

- JSON is parsed with bounds: at most `MAX_JSON_DEPTH` levels of nesting (the standard parser
  recurses, and 5,000 levels are a `RecursionError`), numbers of at most `MAX_NUMBER_CHARS`
  characters (Python refuses to convert integers past 4,300 digits with a `ValueError`), and no
  `NaN`/`Infinity`.
- A string (value or key) holding an unpaired UTF-16 surrogate (`"\\ud800"`) is refused: it
  cannot be encoded as UTF-8, so no database, log or response could take it.
- A chunked body (no `Content-Length`) over `MAX_CONTENT_LENGTH` is 413, as a declared one is:
  Werkzeug's limited stream stops reading at the limit without saying so (`app.api.inputs`,
  the one guard here that reads the request).
- Patterns match the whole value (`re.fullmatch`): `$` also matches before a trailing newline.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from marshmallow import validate

from app.errors import ApiError

MAX_JSON_DEPTH = 32
MAX_NUMBER_CHARS = 40


def _refused(reason: str) -> ApiError:
    return ApiError("validation_error", details={"_body": [reason]})


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _refused(f"Numbers have at most {MAX_NUMBER_CHARS} characters.")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text) if len(text) <= MAX_NUMBER_CHARS else math.inf
    if not math.isfinite(value):
        raise _refused(f"Numbers have at most {MAX_NUMBER_CHARS} characters and are finite.")
    return value


def _parse_constant(text: str):
    raise _refused(f"{text} is not a JSON number.")


_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return True
    return False


def _check(value, surrogates: bool) -> None:
    """Nesting depth of parsed JSON and, when the text escapes surrogates at all, unpaired ones
    in any string: one walk, without recursion."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if surrogates and isinstance(item, str) and _lone_surrogate(item):
            raise _refused("Strings must not hold an unpaired UTF-16 surrogate.")
        if isinstance(item, dict | list):
            if level > MAX_JSON_DEPTH:
                raise _refused(f"JSON is nested at most {MAX_JSON_DEPTH} levels deep.")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, level + 1) for child in children)


def loads(text: str | bytes) -> Any:
    """`json.loads` with the bounds above; `json.JSONDecodeError` for what is not JSON at all."""
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except RecursionError:
        raise _refused(f"JSON is nested at most {MAX_JSON_DEPTH} levels deep.") from None
    # A paired surrogate decodes to one character; only the unpaired ones stay (and only `\\u` escapes
    # can make one: the text itself is valid UTF-8).
    _check(value, surrogates=_SURROGATE_ESCAPE.search(text if isinstance(text, str) else text.decode()) is not None)
    return value


class FullMatch(validate.Regexp):
    """`validate.Regexp`, but the whole value must match (`re.fullmatch`). The OpenAPI document
    shows the pattern anchored (`^(?:…)$`, JSON Schema patterns are searches); the check itself
    is a full match, which no trailing newline passes."""

    def __init__(self, regex: str | re.Pattern, error: str | None = None):
        pattern = regex if isinstance(regex, str) else regex.pattern
        super().__init__(f"^(?:{pattern})$", error=error)

    def __call__(self, value: Any) -> Any:
        if self.regex.fullmatch(value) is None:
            raise validate.ValidationError(self.error.format(input=value, regex=self.regex.pattern))
        return value


def fullmatch(pattern: str | re.Pattern, value: str) -> bool:
    return (re.compile(pattern) if isinstance(pattern, str) else pattern).fullmatch(value) is not None
