"""Benchmark evaluation (``azr eval``)."""
