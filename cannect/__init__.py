"""Cannect backend: configuration, command line and embedded development services."""
