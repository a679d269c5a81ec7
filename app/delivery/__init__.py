"""Senders chosen by name; each vendor behind the same two-method interface."""
