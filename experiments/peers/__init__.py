"""Peer models run for comparison, each in its own venv; never dependencies of the product."""
