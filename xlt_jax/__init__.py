"""xlt_jax: JAX/Flax pretraining and evaluation for cross-lingual transfer research."""

__version__ = "0.1.0"
