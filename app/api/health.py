"""Health for load balancers: /healthz (the process answers) and /readyz (its dependencies do)."""

from __future__ import annotations

import os

import marshmallow as ma
from flask import current_app
from flask.views import MethodView

from app.api.security import public
from app.openapi import Blueprint
from app.stores.admin import database_answers

blp = Blueprint("health", __name__, url_prefix="/", description="Health checks for load balancers (no credential).")


class Health(ma.Schema):
    status = ma.fields.String(required=True, metadata={"enum": ["ok", "unavailable", "draining"]})
    database = ma.fields.String(metadata={"enum": ["ok", "unavailable"]})
    signingKeys = ma.fields.String(metadata={"enum": ["ok", "unavailable"],
                                             "description": "unavailable: the signing keys cannot be opened "
                                                            "(another APP_SECRET), or not read"})
    limits = ma.fields.String(metadata={"enum": ["ok", "degraded"],
                                        "description": "degraded: the rate-limit storage does not answer; only OTP "
                                                       "and exchange need it, so the instance stays ready"})


def _draining() -> bool:
    """gunicorn.conf.py's master writes this file on SIGTERM (draining): one stat per call."""
    path = os.environ.get("USHER_DRAIN_FILE")
    return path is not None and os.path.exists(path)


@blp.route("/healthz")
class Liveness(MethodView):
    @public
    @blp.doc(security=[])
    @blp.no_query
    @blp.response(200, Health)
    def get(self):
        """Liveness

        200 while the process serves requests; checks nothing else (restart the process if it fails).
        """
        return {"status": "ok"}


@blp.route("/readyz")
class Readiness(MethodView):
    @public
    @blp.doc(security=[])
    @blp.no_query
    @blp.response(200, Health)
    @blp.alt_response(503, schema=Health, description="The database does not answer, the signing keys cannot "
                                                       "be opened, or the instance is draining (stopping)")
    def get(self):
        """Readiness

        200 when the database answers and the signing keys open; 503 otherwise (take the instance
        out of rotation until it recovers), and 503 `"status": "draining"` from the SIGTERM that
        stops it (it still serves for `GUNICORN_DRAIN_SECONDS`). A rate-limit storage outage is `"limits": "degraded"`
        with 200: guest sign-in, refresh and queues do not need it, and failing every host at once
        over it would be a total outage.
        """
        usher = current_app.extensions["usher"]
        database = "ok" if database_answers(usher.db) else "unavailable"
        try:
            usher.auth.tokens.current_kids()  # cached for KEYRING_CACHE_SECONDS: opens what it loads
            signing_keys = "ok"
        except Exception:  # noqa: BLE001 - InvalidTag (another APP_SECRET) or a read failure
            signing_keys = "unavailable"
        limits = "ok" if usher.limits.ping() else "degraded"
        draining = _draining()
        ready = database == signing_keys == "ok" and not draining
        status = "draining" if draining else "ok" if ready else "unavailable"
        body = {"status": status, "database": database, "signingKeys": signing_keys, "limits": limits}
        return body, 200 if ready else 503, {} if ready else {"Retry-After": "5"}
