"""Benchmarks: figures side by side with the ways users push records today, as ratios from one run."""
