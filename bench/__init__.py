"""Benchmarks beside their ceilings, and the capacity model that scales their per-core figures out."""
