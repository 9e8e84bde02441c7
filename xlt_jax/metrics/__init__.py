"""Task metrics, JAX-free and faithful to XTREME's `evaluate.py` (values are percentages, 0-100)."""

from xlt_jax.metrics.classification import accuracy
from xlt_jax.metrics.qa import mlqa_em_f1, squad_em_f1
from xlt_jax.metrics.retrieval import bucc_f1, retrieval_accuracy
from xlt_jax.metrics.tagging import seqeval_f1, token_accuracy

__all__ = [
    "accuracy",
    "bucc_f1",
    "mlqa_em_f1",
    "retrieval_accuracy",
    "seqeval_f1",
    "squad_em_f1",
    "token_accuracy",
]
