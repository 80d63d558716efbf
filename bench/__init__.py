"""Benchmark harness: ``python bench/run.py --help`` and ``python bench/report.py``."""
