"""Domain operations shared by the API and the CLI."""
