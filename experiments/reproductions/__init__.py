"""Runs that reproduce a published result or compare systems at equal budget (see experiments/__init__.py)."""
