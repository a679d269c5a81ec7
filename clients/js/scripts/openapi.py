"""Write Usher's /openapi.json (from an app built in-process, no server, no database file kept)
to the path given, for openapi-typescript: `make sdk` runs it before the SDK's types are generated."""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from app import create_app  # noqa: E402


def main(target: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        app = create_app({"DATABASE_URL": f"sqlite:///{folder}/openapi.db", "TESTING": True})
        document = app.test_client().get("/openapi.json").json
        app.extensions["usher"].db.dispose()
    Path(target).write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
