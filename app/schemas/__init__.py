"""marshmallow 4 schemas: camelCase on the wire, unknown fields rejected."""
