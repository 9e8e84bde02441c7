"""Language transformations that derive a synthetic language from a natural one (REFERENCE_SPEC §1).

`parse("translit+inv", layout)` returns a `Transform`; see `spec.py` for the grammar and the task adapters.
"""

from xlt_jax.data.transforms.bio import canonicalize_bio, canonicalize_bio_ids
from xlt_jax.data.transforms.spec import TASKS, VALID_PARTS, Transform, parse, sub_example_id

__all__ = [
    "TASKS",
    "VALID_PARTS",
    "Transform",
    "canonicalize_bio",
    "canonicalize_bio_ids",
    "parse",
    "sub_example_id",
]
