"""HTTP blueprints: consumer, admin and well-known."""
