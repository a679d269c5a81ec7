"""The registry of login methods, senders and bot checks, built per app in `create_app`.

Everything comes in through one door: entry points of the groups `usher.grants`,
`usher.senders` and `usher.bot_checks`. Usher's own grants, senders and bot checks are entry points too
(`BUILTINS`, in the same `importlib.metadata.EntryPoint` form, because Usher runs from its
folder rather than as an installed distribution), loaded by the same loop as an installed
package's, so a built-in is no more privileged than a plugin. What may be *served* is decided
by the settings: `ENABLED_GRANTS` (unset: the built-ins; a plugin grant only when named) and the
sender names `OTP_EMAIL_SENDER` / `OTP_SMS_SENDER`. An unknown name stops the app at start with
the installed names. The public face of all this for plugin authors is `app.plugins`.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from marshmallow import RAISE, ValidationError, missing
from marshmallow import Schema as MarshmallowSchema
from sqlalchemy import select

from app.botdefense import BotCheckPlugin
from app.config import ConfigError, Settings
from app.delivery.base import Sender
from app.errors import ErrorCode
from app.events import EVENT_TYPES
from app.models import OrganizationSettings

if TYPE_CHECKING:
    from flask import Flask
    from flask.views import MethodView

    from app.db import Database
    from app.grants.base import BaseGrant

#: The version of the plugin API (`app.plugins`). A plugin declares the version it was written
#: for; a plugin of another major version is refused at start rather than half working.
API_VERSION = "1.0"
GROUPS = ("usher.grants", "usher.senders", "usher.bot_checks")
BUILTIN = "usher (built-in)"


def _builtin(group: str, name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group=group)


#: Usher's own plugins, declared as an installed package would declare them in its pyproject.toml.
BUILTINS: dict[str, tuple[importlib.metadata.EntryPoint, ...]] = {
    "usher.grants": (
        _builtin("usher.grants", "guest", "app.api.consumer.auth:GUEST"),
        _builtin("usher.grants", "refresh_token", "app.api.consumer.auth:REFRESH"),
        _builtin("usher.grants", "otp", "app.api.consumer.otp:OTP"),
        _builtin("usher.grants", "external", "app.api.consumer.external:EXTERNAL"),
    ),
    "usher.senders": (
        _builtin("usher.senders", "console", "app.delivery.registry:CONSOLE"),
        _builtin("usher.senders", "smtp", "app.delivery.registry:SMTP"),
        _builtin("usher.senders", "webhook", "app.delivery.registry:WEBHOOK"),
        _builtin("usher.senders", "capture", "app.delivery.registry:CAPTURE"),
    ),
    "usher.bot_checks": (
        _builtin("usher.bot_checks", "altcha", "app.botdefense:ALTCHA"),
        _builtin("usher.bot_checks", "turnstile", "app.botdefense:TURNSTILE"),
        _builtin("usher.bot_checks", "hcaptcha", "app.botdefense:HCAPTCHA"),
    ),
}


@dataclass(frozen=True)
class PurgeContext:
    """What a plugin's purge hook gets: the database, the purge's `now`, its batch size."""

    db: Database
    now: datetime
    batch: int


@dataclass(frozen=True)
class GrantPlugin:
    """A login method: its grant (the protocol), its views (the routes, each with a `rule` under
    /api/v1) and what it adds to Usher. Declared once, as the value of a `usher.grants` entry
    point whose name is the grant's `GRANT_TYPE`."""

    grant: type[BaseGrant]
    views: Sequence[type[MethodView]]
    #: Error codes of its own (`code -> ErrorCode`); `ApiError(code)` answers them.
    errors: Mapping[str, ErrorCode] = field(default_factory=dict)
    #: Webhook event types it records (endpoints may subscribe to them).
    event_types: Sequence[str] = ()
    #: The folder of its Alembic branch (`branch_labels = (name,)`), applied by `db upgrade`.
    migrations: str | Path | None = None
    #: Deletes its dead rows in `flask purge`; returns counts by what was deleted.
    purge: Callable[[PurgeContext], Mapping[str, int]] | None = None
    #: Settings fields of its own, per mode: API name (camelCase, unique) -> marshmallow field with
    #: a `load_default` and a `description`; validated by `PATCH /settings` (`plugins`), shown in
    #: the dashboard's Settings page while the grant is enabled, read with `app.plugins.setting`.
    settings: Mapping[str, Any] = field(default_factory=dict)
    api_version: str = API_VERSION

    @property
    def name(self) -> str:
        return self.grant.GRANT_TYPE

    @property
    def session_type(self) -> str | None:
        return self.grant.SESSION_TYPE


@dataclass(frozen=True)
class SenderContext:
    """What a sender's factory may read: the typed settings, its own variables (`option`), and
    for the test outbox the database and clock."""

    settings: Settings
    db: Database
    clock: Callable[[], datetime]
    config: Mapping[str, Any]

    def option(self, name: str, default: str | None = None) -> str | None:
        """A variable of the sender's own (`create_app` overrides, then the environment)."""
        value = self.config.get(name)
        return default if value in (None, "") else str(value)


@dataclass(frozen=True)
class SenderPlugin:
    """A message sender, chosen by name in `OTP_EMAIL_SENDER` / `OTP_SMS_SENDER`."""

    name: str
    #: The channels it can carry (`email`, `sms`); empty: not selectable (test mode's capture).
    channels: tuple[str, ...]
    build: Callable[[SenderContext], Sender]
    api_version: str = API_VERSION


_KINDS: dict[str, type[Any]] = {"usher.grants": GrantPlugin, "usher.senders": SenderPlugin,
                           "usher.bot_checks": BotCheckPlugin}


def _origin(entry_point: importlib.metadata.EntryPoint) -> str:
    """The installed distribution that declared it ("usher-magic-link 1.0.0")."""
    dist = getattr(entry_point, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else f"entry point {entry_point.value}"


class Registry:
    """The installed grants, senders and bot checks of one app, by name."""

    def __init__(self) -> None:
        self.grants: dict[str, GrantPlugin] = {}
        self.senders: dict[str, SenderPlugin] = {}
        self.bot_checks: dict[str, BotCheckPlugin] = {}
        #: Where each (group, name) came from: `usher (built-in)` or `distribution version`.
        self.origins: dict[tuple[str, str], str] = {}
        #: The grants this app serves (set by `enable_grants`).
        self.enabled: list[GrantPlugin] = []

    # Registration: the one function entry points, built-ins and tests go through.
    def register(self, group: str, name: str, plugin: Any, origin: str = BUILTIN) -> None:
        kind = _KINDS.get(group)
        if kind is None:
            raise ConfigError(f"unknown plugin group {group!r}; the groups are {', '.join(GROUPS)}")
        if not isinstance(plugin, kind):
            raise ConfigError(f"{group} entry point {name!r} of {origin} is not a {kind.__name__}")
        if plugin.api_version.split(".")[0] != API_VERSION.split(".")[0]:
            raise ConfigError(f"{group} {name!r} of {origin} needs plugin API {plugin.api_version}; "
                              f"this Usher offers {API_VERSION}")
        if plugin.name != name:
            raise ConfigError(f"{group} entry point {name!r} of {origin} declares the name {plugin.name!r}")
        tables: dict[str, dict[str, Any]] = {"usher.grants": self.grants, "usher.senders": self.senders,
                                             "usher.bot_checks": self.bot_checks}
        table = tables[group]
        if name in table:
            raise ConfigError(f"{group} {name!r} is installed twice: by {self.origins[(group, name)]} and {origin}")
        if group == "usher.grants":
            self._check_grant(plugin, origin)
        table[name] = plugin
        self.origins[(group, name)] = origin

    def _check_grant(self, plugin: GrantPlugin, origin: str) -> None:
        from app.errors import CATALOGUE

        for other in self.grants.values():
            clash = set(plugin.errors) & set(other.errors)
            if clash:
                raise ConfigError(f"grant {plugin.name!r} of {origin} declares error codes of {other.name!r}: "
                                  f"{sorted(clash)}")
        clash = set(plugin.errors) & set(CATALOGUE)
        if clash:
            raise ConfigError(f"grant {plugin.name!r} of {origin} redeclares Usher's error codes {sorted(clash)}")
        for other in self.grants.values():
            clash = set(plugin.settings) & set(other.settings)
            if clash:
                raise ConfigError(f"grant {plugin.name!r} of {origin} declares settings of {other.name!r}: "
                                  f"{sorted(clash)}")
        for view in plugin.views:
            if not getattr(view, "rule", "").startswith("/"):
                raise ConfigError(f"grant {plugin.name!r} of {origin}: view {view.__name__} needs a `rule`")

    def builtin(self, group: str, name: str) -> bool:
        return self.origins.get((group, name)) == BUILTIN

    # What the settings choose.
    def enable_grants(self, names: Iterable[str]) -> list[GrantPlugin]:
        """The grants to serve: those named, or every built-in when none is; unknown names stop
        the app with the installed ones."""
        names = tuple(names)
        unknown = sorted(set(names) - set(self.grants))
        if unknown:
            raise ConfigError(f"ENABLED_GRANTS names unknown grant types {unknown}; installed: "
                              + ", ".join(sorted(self.grants)))
        chosen = set(names) if names else {name for name in self.grants if self.builtin("usher.grants", name)}
        self.enabled = [plugin for name, plugin in self.grants.items() if name in chosen]
        return self.enabled

    def sender(self, variable: str, name: str, channel: str) -> SenderPlugin:
        """The sender `variable` names for `channel`, or a ConfigError listing the installed ones."""
        usable = sorted(key for key, plugin in self.senders.items() if channel in plugin.channels)
        plugin = self.senders.get(name)
        if plugin is None or channel not in plugin.channels:
            raise ConfigError(f"{variable} names {name!r}, which is not an installed {channel} sender; "
                              f"installed: {', '.join(usable)}")
        return plugin

    def bot_check(self, name: str) -> BotCheckPlugin:
        """The bot check `name` (the `botDefense` setting), or a ConfigError listing the installed ones."""
        plugin = self.bot_checks.get(name)
        if plugin is None:
            raise ConfigError(f"bot check {name!r} is not installed; installed: "
                              + (", ".join(sorted(self.bot_checks)) or "none"))
        return plugin

    # What the enabled grants add.
    @property
    def session_types(self) -> list[str]:
        return [plugin.session_type for plugin in self.enabled if plugin.session_type]

    @property
    def event_types(self) -> tuple[str, ...]:
        extra = [event for plugin in self.enabled for event in plugin.event_types if event not in EVENT_TYPES]
        return (*EVENT_TYPES, *dict.fromkeys(extra))

    @property
    def settings_fields(self) -> dict[str, Any]:
        """The settings fields of the enabled grants, by API name."""
        return {name: setting for plugin in self.enabled for name, setting in plugin.settings.items()}

    def settings_values(self, stored: Mapping[str, Any] | None) -> dict[str, Any]:
        """Every enabled field's value: the stored one, else its declared default."""
        stored = stored or {}
        return {name: stored.get(name, None if setting.load_default is missing else setting.load_default)
                for name, setting in self.settings_fields.items()}

    def load_settings(self, value: Any) -> dict[str, Any]:
        """Validate submitted plugin settings (any subset of the enabled fields); a
        ValidationError names each bad or unknown field."""
        if not isinstance(value, Mapping):
            raise ValidationError("Must be an object of plugin settings.")
        schema = MarshmallowSchema.from_dict(dict(self.settings_fields), name="PluginSettings")()
        return schema.load({key: item for key, item in value.items()}, partial=True, unknown=RAISE)

    def error(self, code: str) -> ErrorCode | None:
        for plugin in self.grants.values():
            if code in plugin.errors:
                return plugin.errors[code]
        return None

    # What installed grants bring whether or not they are served (their tables exist).
    @property
    def migration_locations(self) -> list[str]:
        return [str(plugin.migrations) for plugin in self.grants.values() if plugin.migrations]

    @property
    def purge_hooks(self) -> list[tuple[str, Callable[[PurgeContext], Mapping[str, int]]]]:
        return [(name, plugin.purge) for name, plugin in self.grants.items() if plugin.purge]


def installed_entry_points(group: str) -> Iterable[importlib.metadata.EntryPoint]:
    """The group's entry points of the installed distributions (one per name and distribution)."""
    return importlib.metadata.entry_points(group=group)


def load_registry() -> Registry:
    """Every built-in, then every installed plugin, through `Registry.register`."""
    registry = Registry()
    for group in GROUPS:
        declared = [(entry_point, BUILTIN) for entry_point in BUILTINS[group]]
        declared += [(entry_point, _origin(entry_point)) for entry_point in installed_entry_points(group)]
        for entry_point, origin in declared:
            try:
                plugin = entry_point.load()
            except Exception as exc:  # a broken plugin: say which, at start
                raise ConfigError(f"{group} entry point {entry_point.name!r} of {origin} "
                                  f"({entry_point.value}) cannot be loaded: {exc}") from exc
            registry.register(group, entry_point.name, plugin, origin)
    return registry


def stored_plugin_settings(db: Database, organization_id: str, mode: str) -> dict[str, Any]:
    """The plugin settings stored for one organization and mode (one read; not on the hot path)."""
    with db.reader() as connection:
        stored = connection.execute(select(OrganizationSettings.plugin_settings).where(
            OrganizationSettings.organization_id == organization_id, OrganizationSettings.mode == mode)).scalar()
    return dict(stored or {})


def registry_of(app: Flask) -> Registry:
    return app.extensions["usher_registry"]


def purge_plugins(registry: Registry, db: Database, now: datetime, batch: int) -> dict[str, int]:
    """Run every installed grant's purge hook; counts keyed `name.what`."""
    counts: dict[str, int] = {}
    for name, hook in registry.purge_hooks:
        for what, count in hook(PurgeContext(db=db, now=now, batch=batch)).items():
            counts[f"{name}.{what}"] = count
    return counts
