"""Every view of the API declares who may call it (`requires(...)` or `public`), and the one
request step refuses a view that does not: no view can skip the caller's resolution."""

from __future__ import annotations

import pytest
from flask.views import MethodView

from app.api.security import DECLARING_BLUEPRINTS, requires, view_requirement


def test_every_api_view_declares_its_caller(app):
    undeclared = []
    seen_blueprints = set()
    for rule in app.url_map.iter_rules():
        blueprint = rule.endpoint.rpartition(".")[0]
        if rule.rule.startswith(("/api/", "/oauth/", "/.well-known/", "/healthz", "/readyz")):
            seen_blueprints.add(blueprint)
            assert blueprint in DECLARING_BLUEPRINTS, rule.rule
        if blueprint not in DECLARING_BLUEPRINTS:
            continue
        for method in rule.methods - {"OPTIONS", "HEAD"}:
            if view_requirement(app.view_functions[rule.endpoint], method) is None:
                undeclared.append((method, rule.rule))
    assert not undeclared
    assert seen_blueprints == DECLARING_BLUEPRINTS


def test_a_view_that_declares_nothing_is_refused(app_config):
    """A view added to an API blueprint without a declaration never runs."""
    from app import create_app

    app = create_app(app_config)
    ran = []

    class Undeclared(MethodView):
        def get(self):
            ran.append(True)
            return {"ok": True}

    app.view_functions["consumer.undeclared"] = Undeclared.as_view("undeclared")
    app.add_url_rule("/api/v1/undeclared", endpoint="consumer.undeclared")
    try:
        answer = app.test_client().get("/api/v1/undeclared")
        assert answer.status_code == 500 and answer.json["error"] == "internal_error"
        assert ran == []
    finally:
        app.extensions["usher"].db.dispose()


def test_a_declaration_names_a_credential_or_is_public():
    with pytest.raises(ValueError, match="@public"):
        requires()
