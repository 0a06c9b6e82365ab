"""Benchmarks of the project's code paths (run as `python -m benchmarks.NAME`)."""
