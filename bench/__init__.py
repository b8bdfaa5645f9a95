"""Benchmark scripts (run as ``python -m bench.<name>``); they print, library code never does."""
