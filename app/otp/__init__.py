"""One-time codes: normalize the identifier, limit, generate, hash, deliver."""
