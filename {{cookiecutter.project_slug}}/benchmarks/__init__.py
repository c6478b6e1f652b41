"""Benchmarks: the framework against raw, json and streams baselines (``python -m benchmarks``).

See ``benchmarks/README.md`` for what is measured and how to read the report.
"""
