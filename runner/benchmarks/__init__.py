"""Benchmarks that set runner beside other tools (make bench-compare)."""
