"""Usher: an identity provider for consumer-facing commerce apps."""

from __future__ import annotations

import logging
import os
from typing import Any, cast

from flask import Flask
from flask.json.provider import DefaultJSONProvider

__version__ = "0.1.0"


def configure_logging(level: str) -> None:
    """One line per record on stderr; called by the entry points (wsgi, gunicorn), not the factory,
    so that an embedding application keeps its own logging.

    No format here or in gunicorn's names the caller's file, function or line, so records skip
    the stack walk that finds them (the logging HOWTO's "Optimization"). Threads and processes
    are still collected: gunicorn's own format prints the process id."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # The switch the logging HOWTO documents for this (docs.python.org/3/howto/logging.html#optimization):
    # no public function sets it.
    logging._srcfile = None  # no stack walk for the caller's file and line


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build an app: settings, clock, database, extensions, blueprints, CLI and error handlers.

    Everything stateful (database, keyring, grants, limiter, OpenAPI) is made here, per app.
    `config` overrides settings under their environment names (`DATABASE_URL`, …) and may
    carry Flask's own keys (`TESTING`).
    """
    from app.api.admin import blp as admin_blp
    from app.api.consumer import blp as consumer_blp
    from app.api.errors import register_error_handlers
    from app.api.events import register_events
    from app.api.grants import build_auth_blueprint
    from app.api.health import blp as health_blp
    from app.api.inputs import register_input_guards
    from app.api.oauth import blp as oauth_blp
    from app.api.scope import bind_scope
    from app.api.sdk import register_sdk
    from app.api.security import register_caller_step
    from app.api.wellknown import blp as wellknown_blp
    from app.botdefense import BotCheckContext, build_bot_defense
    from app.cli import register_cli
    from app.clock import Clock
    from app.config import Settings
    from app.cors import register_cors
    from app.dashboard import init_dashboard
    from app.db import Database, Pooling
    from app.delivery.registry import build_senders
    from app.grants.base import AuthServer
    from app.jobs import register_jobs
    from app.metrics import Metrics
    from app.oauth import build_oauth_server
    from app.observability import register_metrics, register_observability
    from app.openapi import (
        Api,
        docs_config,
        document_registered,
        swagger_assets_blueprint,
    )
    from app.proxies import TrustedProxyFix
    from app.ratelimit import RateLimits, build_storage
    from app.registry import SenderContext, load_registry
    from app.scope import AppScope
    from app.security.callers import CallerResolver
    from app.services.app_secret import check_fingerprint
    from app.services.events import Events
    from app.state import Usher
    from app.stores import build_stores
    from app.tokens.keyring import ACCESS_KEYS, REFRESH_KEYS, Keyring
    from app.tokens.service import TokenService

    settings = Settings.load(config)
    app = Flask(__name__, instance_relative_config=False)
    app.config.update(docs_config(__version__, settings.issuer, swagger_ui=settings.docs_enabled))
    app.config.update(MAX_CONTENT_LENGTH=settings.max_content_length,
                      RATELIMIT_STORAGE_URI=settings.ratelimit_storage_uri)
    app.config.update({key: value for key, value in (config or {}).items() if key.isupper()
                       and key.lower() not in Settings.__dataclass_fields__})
    cast(DefaultJSONProvider, app.json).sort_keys = False  # Flask's own provider

    if settings.trusted_proxy_count:  # forwarded headers from the listed proxies only (app/proxies.py)
        app.wsgi_app = TrustedProxyFix(app.wsgi_app, settings.trusted_proxy_count,  # type: ignore[method-assign]
                                       settings.trusted_proxies)

    clock = Clock()
    db = Database(settings.database_url, settings.sqlite_busy_timeout_ms, Pooling.of(settings))
    try:
        check_fingerprint(db, settings)  # a host with another APP_SECRET refuses to start
    except Exception:
        db.dispose()
        raise
    access_keys, refresh_keys = (Keyring(db, settings.app_secret, settings.keyring_cache_seconds, purpose, clock,
                                         settings.app_secret_fallbacks)
                                 for purpose in (ACCESS_KEYS, REFRESH_KEYS))
    tokens = TokenService(access_keys, refresh_keys, settings.issuer, settings.token_leeway_seconds, clock)
    callers = CallerResolver(db, tokens, settings.app_secret, clock, settings.publishable_key_cache_seconds,
                             settings.app_secret_fallbacks)
    callers.forget_on_change(db.sessionmaker)
    limits = RateLimits(build_storage(settings.ratelimit_storage_uri))
    metrics = app.extensions["usher_metrics"] = Metrics()
    jobs = register_jobs(app, settings)
    events = Events(settings.webhook_listeners_cache_seconds, jobs.enqueue, clock)
    register_events(app, events)
    stores = build_stores(db, events)
    auth = AuthServer(db, tokens, limits, settings, callers, clock, events, stores, metrics)
    registry = load_registry()  # built-ins and installed plugins, through one door
    app.extensions["usher_registry"] = registry
    bind_scope(app, AppScope(registry=registry))  # for what is handed nothing (app/scope.py)
    grants = registry.enable_grants(settings.enabled_grants)
    for plugin in grants:
        auth.register_grant(plugin.grant)
    auth_blp = build_auth_blueprint(grants)
    senders = build_senders(registry, SenderContext(settings=settings, db=db, clock=clock,
                                                    config={**os.environ, **(config or {})}))
    usher = Usher(settings=settings, clock=clock, db=db, callers=callers, auth=auth, limits=limits, senders=senders,
                  events=events, stores=stores,
                  bot_defense=build_bot_defense(registry, BotCheckContext(settings=settings, limits=limits),
                                                metrics.count_challenge))
    app.extensions["usher"] = usher
    app.teardown_appcontext(usher.teardown)

    api = Api(app)
    with app.app_context():  # plugin error codes are looked up through the app (their examples)
        for blueprint in (consumer_blp, auth_blp, admin_blp, wellknown_blp, oauth_blp, health_blp):
            api.register_blueprint(blueprint)
    document_registered(api, registry)
    app.extensions["oauth"] = build_oauth_server(app)
    if settings.docs_enabled:
        app.register_blueprint(swagger_assets_blueprint())
    init_dashboard(app)
    register_sdk(app)
    register_error_handlers(app)
    register_input_guards(app)
    register_observability(app)
    register_metrics(app, metrics)
    register_cors(app)
    register_cli(app)
    register_caller_step(app)  # last: the caller is resolved after the other request hooks
    return app
