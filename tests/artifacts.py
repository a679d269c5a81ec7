"""Figures the tests measured, kept in test-artifacts/ for the notes (one JSON file per area)."""

from __future__ import annotations

import json

from tests.live import ROOT

ARTIFACTS = ROOT / "test-artifacts"


def record(file: str, name: str, figures: dict) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / file
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = figures
    path.write_text(json.dumps(data, indent=2, default=str))
