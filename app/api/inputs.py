"""The request-level input guard (`app.inputs` holds the parsing rules, which read no request)."""

from __future__ import annotations

from flask import Flask, request
from werkzeug.exceptions import RequestEntityTooLarge


def register_input_guards(app: Flask) -> None:
    @app.before_request
    def _chunked_body_within_limit():
        limit = request.max_content_length
        if request.content_length is not None or limit is None or "wsgi.input_terminated" not in request.environ:
            return
        if len(request.get_data(cache=True)) >= limit and request.environ["wsgi.input"].read(1):
            raise RequestEntityTooLarge()
