"""Benchmarks: every target is a ratio measured in one run, printed beside its target."""
