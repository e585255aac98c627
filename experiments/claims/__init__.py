"""Probes of what a figure or diagnostic of an original system measures (see experiments/__init__.py)."""
