"""Ed25519 signing keys, the JWKS, and the token service (PyJWT, EdDSA only)."""
