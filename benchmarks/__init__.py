"""Benchmarks, run from the repository root: `python -m benchmarks.bench`, `python -m benchmarks.grid`,
`python benchmarks/look.py`. Nothing in the app imports them."""
