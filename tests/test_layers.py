"""The API layer asks stores and services for data and imports no SQLAlchemy: the queries live
in one module per aggregate (app/stores/, app/services/), where the contract suites reach them."""

from __future__ import annotations

import ast
from pathlib import Path

API = Path(__file__).resolve().parent.parent / "app" / "api"


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_view_imports_sqlalchemy():
    offenders = {str(path.relative_to(API)): sorted(name for name in _imports(path)
                                                    if name.split(".")[0] == "sqlalchemy")
                 for path in sorted(API.rglob("*.py"))}
    assert {path: names for path, names in offenders.items() if names} == {}
