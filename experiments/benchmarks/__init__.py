"""Speed and memory benchmarks of wavejax itself (see experiments/__init__.py for one line per script)."""
