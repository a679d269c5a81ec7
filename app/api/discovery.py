"""Import every module of a package: a blueprint's views register themselves on import."""

from __future__ import annotations

import importlib
import pkgutil


def import_submodules(package: str) -> None:
    for module in pkgutil.iter_modules(importlib.import_module(package).__path__):
        importlib.import_module(f"{package}.{module.name}")
