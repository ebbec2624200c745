"""Benchmark harness for diary: `make bench` or `python -m bench`."""
