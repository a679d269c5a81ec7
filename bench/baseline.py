"""The physical limit of a Python token endpoint here: a bare Flask app that signs one EdDSA
JWT (POST /sign) or verifies one (GET /verify), with the same PyJWT and gunicorn settings.

Run as `gunicorn -c gunicorn.conf.py bench.baseline:app`."""

from __future__ import annotations

import secrets
import time

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask, jsonify, request

KEY = Ed25519PrivateKey.from_private_bytes(b"\x01" * 32)  # the same key in every worker
PUBLIC = KEY.public_key()
app = Flask(__name__)


@app.post("/sign")
def sign():
    now = int(time.time())
    token = jwt.encode({"sub": "guest_x", "sessionId": secrets.token_hex(8), "iat": now, "exp": now + 3600},
                       KEY, algorithm="EdDSA", headers={"kid": "k1"})
    return jsonify({"accessToken": token}), 201


@app.get("/verify")
def verify():
    token = request.headers.get("Authorization", "")[7:]
    claims = jwt.decode(token, PUBLIC, algorithms=["EdDSA"])
    return jsonify({"sub": claims["sub"]})
