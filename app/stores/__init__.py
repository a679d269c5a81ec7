"""Stores: the persistence of each aggregate behind an interface, chosen once per app."""
