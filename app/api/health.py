"""Health for load balancers: /healthz (the process answers) and /readyz (its dependencies do)."""

from __future__ import annotations

import marshmallow as ma
from flask import current_app
from flask.views import MethodView
from sqlalchemy import text

from app.openapi import Blueprint

blp = Blueprint("health", __name__, url_prefix="/", description="Health checks for load balancers (no credential).")


class Health(ma.Schema):
    status = ma.fields.String(required=True, metadata={"enum": ["ok", "unavailable"]})
    database = ma.fields.String(metadata={"enum": ["ok", "unavailable"]})
    limits = ma.fields.String(metadata={"enum": ["ok", "unavailable"]})


@blp.route("/healthz")
class Liveness(MethodView):
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
    @blp.doc(security=[])
    @blp.no_query
    @blp.response(200, Health)
    @blp.alt_response(503, schema=Health, description="The database or the limit storage does not answer")
    def get(self):
        """Readiness

        200 when the database and the rate-limit storage answer; 503 otherwise (take the instance
        out of rotation until it recovers).
        """
        usher = current_app.extensions["usher"]
        try:
            with usher.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            database = "ok"
        except Exception:  # noqa: BLE001 - any failure means not ready
            database = "unavailable"
        limits = "ok" if usher.limits.ping() else "unavailable"
        ready = database == limits == "ok"
        body = {"status": "ok" if ready else "unavailable", "database": database, "limits": limits}
        return body, 200 if ready else 503, {} if ready else {"Retry-After": "5"}
