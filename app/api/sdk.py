"""The browser SDK, served by Usher itself: `GET /sdk/v1/usher.js` (ES module) and
`/sdk/v1/usher.global.js` (classic script, `window.Usher`).

The files are built from clients/js by `make sdk` and checked in under app/sdk/, so serving them
needs no Node. They are read once per app; the ETag is their content hash, so a shop's browser
revalidates after the cache lifetime and gets a 304 until Usher ships a new build. Any origin
may load them (`Access-Control-Allow-Origin: *`): a module script from another origin is a CORS
request."""

from __future__ import annotations

import hashlib
from pathlib import Path

from flask import Blueprint, Flask, Response, abort, request

SDK_DIR = Path(__file__).resolve().parent.parent / "sdk"
FILES = ("usher.js", "usher.global.js")
CACHE_CONTROL = "public, max-age=3600"  # an hour; then revalidated with the ETag


def register_sdk(app: Flask) -> None:
    """Read the built files once and serve them under /sdk/v1/."""
    files = {}
    for name in FILES:
        body = (SDK_DIR / name).read_bytes()
        files[name] = (body, hashlib.sha256(body).hexdigest()[:32])
    blueprint = Blueprint("sdk", __name__, url_prefix="/sdk/v1")

    @blueprint.get("/<name>")
    def sdk_file(name: str):
        if name not in files:
            abort(404)
        body, etag = files[name]
        response = Response(body, mimetype="text/javascript")
        response.set_etag(etag)
        response.headers["Cache-Control"] = CACHE_CONTROL
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
        return response.make_conditional(request)

    app.register_blueprint(blueprint)
