"""A real gunicorn for tests whose behaviour depends on processes, and a tiny HTTP client."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Under pytest, the markers of the running test (tests/conftest.py sets them before its fixtures):
# starting gunicorn or another server from a test without its marker fails, so `make test-fast`
# (`-m "not gunicorn and not services"`) never starts one. None outside pytest (bench/).
RUNNING_TEST_MARKERS: set[str] | None = None


def require_marker(marker: str, what: str) -> None:
    if RUNNING_TEST_MARKERS is not None:
        assert marker in RUNNING_TEST_MARKERS, f"a test that starts {what} must be marked pytest.mark.{marker}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoopbackHTTPServer:
    """An HTTP peer of the tests: a ThreadingHTTPServer on a spare loopback port, served by a
    daemon thread for as long as the `with` block lasts."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Reply:
    status: int
    body: dict | None
    headers: dict

    @property
    def json(self) -> dict | None:
        return self.body


def http(method: str, url: str, headers: dict | None = None, body: dict | None = None, timeout: float = 30) -> Reply:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw = response.read()
            return Reply(response.status, json.loads(raw) if raw else None, dict(response.headers))
    except urllib.error.HTTPError as error:
        raw = error.read()
        body = json.loads(raw) if raw else None
        if isinstance(body, dict) and "requestId" in body:  # every error body carries the request id
            assert body.pop("requestId") == error.headers["X-Request-Id"]
        return Reply(error.code, body, dict(error.headers))


class LiveServer:
    def __init__(self, env: dict, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # One ISSUER for every server a test starts, and for the apps it builds in process: the
        # documented default. (Unset, ISSUER follows BIND, i.e. each server's own port; hosts of
        # one deployment share one ISSUER, as the README says.)
        self.env = {**os.environ, "ISSUER": "http://127.0.0.1:8000", **env, "BIND": f"127.0.0.1:{self.port}"}
        self.log_path = log_path
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> None:
        require_marker("gunicorn", "gunicorn")
        log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the server
        self.process = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
                                        cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text()[-2000:]}")
            try:
                if http("GET", self.url + "/openapi.json", timeout=2).status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer in time")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


class RedisServer:
    """A redis-server of the test's own on a spare port (never the machine's shared one)."""

    def __init__(self, workdir: Path):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        require_marker("services", "redis-server")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1 (cryptography)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "fullchain.pem", directory / "privkey.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class NginxServer:
    """Debian's nginx with deploy/nginx.conf, its site-specific lines pointed at this test."""

    def __init__(self, workdir: Path, upstream_port: int):
        self.workdir, self.upstream_port = workdir, upstream_port
        self.http_port, self.https_port = free_port(), free_port()
        self.url = f"https://127.0.0.1:{self.https_port}"
        self.process: subprocess.Popen | None = None

    def config(self) -> Path:
        cert, key = self_signed_certificate(self.workdir)
        text = (ROOT / "deploy" / "nginx.conf").read_text()
        replacements = {
            "listen 80;": f"listen 127.0.0.1:{self.http_port};",
            "listen 443 ssl http2;": f"listen 127.0.0.1:{self.https_port} ssl http2;",
            "/etc/ssl/usher/fullchain.pem": str(cert), "/etc/ssl/usher/privkey.pem": str(key),
            "/run/usher-nginx.pid": str(self.workdir / "nginx.pid"),
            "/var/log/nginx/": f"{self.workdir}/",
            "server 127.0.0.1:8000": f"server 127.0.0.1:{self.upstream_port}",
        }
        for old, new in replacements.items():
            assert old in text, old
            text = text.replace(old, new)
        path = self.workdir / "nginx.conf"
        path.write_text(text)
        return path

    def start(self) -> None:
        require_marker("services", "nginx")
        config = self.config()
        check = subprocess.run(["nginx", "-t", "-c", str(config), "-p", str(self.workdir)], capture_output=True,
                               text=True, check=False)
        assert check.returncode == 0, check.stderr
        self.process = subprocess.Popen(["nginx", "-c", str(config), "-p", str(self.workdir), "-g", "daemon off;"],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.https_port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def https(method: str, url: str, headers: dict | None = None, body: dict | None = None,
          source: str = "127.0.0.1") -> Reply:
    """A request over TLS (certificate not checked: it is the test's own) from a chosen loopback address."""
    import http.client
    import ssl
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    connection = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=30, context=context,
                                             source_address=(source, 0))
    data = json.dumps(body).encode() if body is not None else None
    all_headers = dict(headers or {})
    if data is not None:
        all_headers["Content-Type"] = "application/json"
    try:
        connection.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=data,
                           headers=all_headers)
        response = connection.getresponse()
        raw = response.read()
        payload = json.loads(raw) if raw else None
        if response.status >= 400 and isinstance(payload, dict) and "requestId" in payload:
            assert payload.pop("requestId") == response.headers["X-Request-Id"] or response.status in (413, 503)
        return Reply(response.status, payload, dict(response.headers))
    finally:
        connection.close()


class PostgresServer:
    """A PostgreSQL cluster of the test's own (initdb + pg_ctl) on a spare port, in a directory
    of its own (the postgres user cannot enter pytest's private temporary directories)."""

    def __init__(self):
        import tempfile

        self.workdir = Path(tempfile.mkdtemp(prefix="usher-pg-"))
        self.data = self.workdir / "pgdata"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> subprocess.CompletedProcess:
        command = list(args)
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)

    def init(self) -> None:
        require_marker("services", "PostgreSQL")
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres")
            os.chmod(self.workdir, 0o755)  # the postgres user must enter it
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.workdir / "postgres.log"),
                  "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop("immediate")
        shutil.rmtree(self.workdir, ignore_errors=True)


class PgBouncerServer:
    """Debian's PgBouncer of the test's own on a spare port, in transaction mode, in front of one
    PostgreSQL database (database `usher` here; any user name is let in and logs in as `user`)."""

    def __init__(self, host: str, port: int, dbname: str, user: str, pool_size: int = 4):
        import tempfile

        self.workdir = Path(tempfile.mkdtemp(prefix="usher-pgbouncer-"))
        self.port = free_port()
        self.url = f"postgresql+psycopg://usher@127.0.0.1:{self.port}/usher"
        (self.workdir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"usher = host={host} port={port} dbname={dbname} user={user}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            "auth_type = any\npool_mode = transaction\n"
            f"default_pool_size = {pool_size}\nmax_client_conn = 200\n"
            # A server that cannot be reached fails the waiting clients within seconds, not 120 s.
            "query_wait_timeout = 3\nserver_connect_timeout = 2\nserver_login_retry = 1\n"
            f"logfile = {self.workdir / 'pgbouncer.log'}\n")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        require_marker("services", "PgBouncer")
        command = ["pgbouncer", str(self.workdir / "pgbouncer.ini")]
        if os.geteuid() == 0:  # PgBouncer refuses to run as root
            shutil.chown(self.workdir, "postgres")
            os.chmod(self.workdir, 0o755)
            for path in self.workdir.iterdir():
                shutil.chown(path, "postgres")
            command = ["pgbouncer", "-u", "postgres", str(self.workdir / "pgbouncer.ini")]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.1)
        raise RuntimeError(f"pgbouncer did not start: {self.log()[-2000:]}")

    def log(self) -> str:
        path = self.workdir / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
