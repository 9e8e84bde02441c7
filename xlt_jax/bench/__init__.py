"""Benchmarks: `python -m xlt_jax.bench <name>`; each ends with one JSON line of figures."""
