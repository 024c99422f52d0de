"""Benchmark loaders: one module per upstream format."""
