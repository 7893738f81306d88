"""Benchmarks of issue 8: `python -m bench [--quick]` (see docs/performance.md)."""
