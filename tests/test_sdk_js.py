"""The browser SDK's own checks, in `make test`: its unit tests (node:test, clients/js and
clients/react), the checked-in build is a fresh build, the wire types are fresh and say which
fields are always sent, the size budget, nothing a strict CSP refuses; and how Usher serves it.

The packages' devDependencies are installed from their committed package-lock.json (npm ci)
into their git-ignored node_modules/, once per lock change, as `make sdk` does."""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import re
import shutil
import subprocess

import pytest

from tests.live import ROOT
from tests.test_sdk_api import MAY_BE_ABSENT, _schemas_of_responses

JS = ROOT / "clients" / "js"
REACT = ROOT / "clients" / "react"
SERVED = ROOT / "app" / "sdk"
BUDGET = 6 * 1024  # gzipped bytes of the module (sdk.md)


def npm_ci(package) -> None:
    """`npm ci` when node_modules/ was not installed from the current lock."""
    npm = shutil.which("npm")
    assert npm, "npm (and node) are needed for the SDK's checks (.ci/run installs them)"
    stamp = package / "node_modules" / ".usher-lock"
    lock = hashlib.sha256((package / "package-lock.json").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != lock:
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=package, check=True,
                       capture_output=True, timeout=600)
        stamp.write_text(lock)


@functools.cache
def build_packages() -> None:
    """Both packages installed and freshly built into their dist/ (once per pytest run: the
    browser tests bundle the built files too)."""
    npm_ci(JS)
    npm_ci(REACT)
    for package in (JS, REACT):
        result = subprocess.run(["node", "build.mjs"], cwd=package, capture_output=True, text=True, timeout=300,
                                check=False)
        assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def built() -> None:
    build_packages()


def _node_tests(package) -> str:
    files = sorted(str(path.relative_to(package)) for path in (package / "test").glob("*.test.mjs"))
    result = subprocess.run(["node", "--test", *files], cwd=package, capture_output=True, text=True, timeout=300,
                            check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "# fail 0" in result.stdout
    return result.stdout


def test_sdk_unit_tests_pass(built):
    output = _node_tests(JS)
    passed = int(re.search(r"^# pass (\d+)", output, re.MULTILINE).group(1))
    assert passed >= 24, output[-2000:]
    for name in ("refresh never uses a token older than storage's", "network errors and 503 keep the session",
                 "3 h behind", "3 h ahead", "watch polls at its interval", "errors are UsherError",
                 "storage adapters", "verifyCode and exchange upgrade a guest", "wake-up checks"):
        assert name in output, name


def test_react_binding_tests_pass(built):
    output = _node_tests(REACT)
    assert int(re.search(r"^# pass (\d+)", output, re.MULTILINE).group(1)) >= 3


def test_the_checked_in_build_is_a_fresh_build(built):
    for name in ("usher.js", "usher.global.js"):
        fresh, served = (JS / "dist" / name).read_bytes(), (SERVED / name).read_bytes()
        assert fresh == served, f"app/sdk/{name} differs from a fresh build of clients/js: run `make sdk`"


def test_the_wire_types_are_generated_from_the_current_openapi_document(built, client, tmp_path):
    (tmp_path / "openapi.json").write_text(json.dumps(client.get("/openapi.json").json, indent=1))
    result = subprocess.run([str(JS / "node_modules" / ".bin" / "openapi-typescript"), str(tmp_path / "openapi.json"),
                             "-o", str(tmp_path / "openapi.d.ts")], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "openapi.d.ts").read_text() == (JS / "src" / "openapi.d.ts").read_text(), (
        "clients/js/src/openapi.d.ts is stale: run `make sdk`")


def _optional_fields_in_types(text: str) -> dict[str, set[str]]:
    """`Name: { field?: … }` of the generated `components.schemas`, per schema."""
    block = text[text.index("    schemas: {"):text.index("    responses: ")]
    found: dict[str, set[str]] = {}
    current = None
    for line in block.splitlines():
        schema = re.fullmatch(r" {8}(\w+): (\{|Record<string, never>;)", line)
        if schema:
            current = schema.group(1)
            found[current] = set()
        field = re.fullmatch(r" {12}(\w+)\?: .*", line)
        if field and current:
            found[current].add(field.group(1))
    return found


def test_the_generated_types_have_no_optional_field_the_api_always_sends(client):
    names = _schemas_of_responses(client.get("/openapi.json").json)
    optional = _optional_fields_in_types((JS / "src" / "openapi.d.ts").read_text())
    assert names <= set(optional)
    for name in sorted(names):
        assert optional[name] == MAY_BE_ABSENT.get(name, set()), (name, optional[name])
    assert optional["QueueConsumerState"] == set() and optional["SessionInfo"] == {"guestId"}


def test_the_module_fits_the_budget_and_nothing_a_strict_csp_refuses():
    for name in ("usher.js", "usher.global.js"):
        text = (SERVED / name).read_text()
        assert len(gzip.compress(text.encode(), 9)) <= BUDGET, name
        for forbidden in ("eval(", "new Function", "Function(", ".style", "innerHTML", "document.write",
                          "createElement", "importScripts"):
            assert forbidden not in text, (name, forbidden)
        assert re.findall(r"https?://", text) == [], name  # no address but the baseUrl it is given
    module = (SERVED / "usher.js").read_text()
    assert re.search(r"export\s*\{[^}]*\bUsher\b[^}]*\bUsherError\b", module) or re.search(
        r"export\s*\{[^}]*\bUsherError\b[^}]*\bUsher\b", module), module[-200:]


def test_npm_pack_is_the_built_module_and_its_types(built):
    result = subprocess.run(["npm", "pack", "--dry-run", "--json", "--offline"], cwd=JS, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    files = {entry["path"] for entry in json.loads(result.stdout)[0]["files"]}
    assert {"package.json", "dist/usher.js", "dist/index.d.ts", "dist/openapi.d.ts"} <= files
    assert not any(path.startswith(("src/", "test/", "node_modules/")) for path in files)


@pytest.mark.parametrize("name", ["usher.js", "usher.global.js"])
def test_usher_serves_the_sdk_with_cors_etag_and_a_cache_lifetime(client, name):
    response = client.get(f"/sdk/v1/{name}", headers={"Origin": "https://shop.example"})
    assert response.status_code == 200
    assert response.data == (SERVED / name).read_bytes()
    assert response.mimetype == "text/javascript"
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert response.headers["Cache-Control"] == "public, max-age=3600"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    etag = response.headers["ETag"]
    assert etag.strip('"') == hashlib.sha256(response.data).hexdigest()[:32]
    again = client.get(f"/sdk/v1/{name}", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == etag
    assert client.get(f"/sdk/v1/{name}", headers={"If-None-Match": '"other"'}).status_code == 200
    head = client.head(f"/sdk/v1/{name}")
    assert head.status_code == 200 and head.data == b"" and head.headers["ETag"] == etag


def test_only_the_two_built_files_are_served(client):
    for path in ("/sdk/v1/index.ts", "/sdk/v1/..%2Fapi%2Fsdk.py", "/sdk/v1/", "/sdk/v2/usher.js"):
        assert client.get(path).status_code == 404, path
