"""HTTP blueprints: consumer (publishable key), auth (the enabled login methods, built per
app), admin (secret key), oauth (RFC 7662/7009 for merchants' servers), well-known (JWKS and
metadata) and health (`/healthz`, `/readyz`)."""
