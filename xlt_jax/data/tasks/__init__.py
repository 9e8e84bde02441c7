"""Fine-tuning tasks on the real data: POS, NER, NLI, QA and Tatoeba (host-side NumPy, no JAX).

Entry point: `prepare(task, tokenizer, lang=..., split=..., transform=..., seed=...)` returns a `TaskData`
whose `features` are padded NumPy arrays; `iterate_batches` cuts bucketed batches from them. Each task
module (`tagging`, `classification`, `qa`, `retrieval`) also has the post-processing that turns model
outputs back into words, labels, answer strings or embeddings, and a `score` function.
"""

from xlt_jax.data.tasks.base import (
    IGNORE_INDEX,
    TASKS,
    Features,
    TaskData,
    TaskSpec,
    bucket_length,
    concat_outputs,
    iterate_batches,
    num_batches,
    prepare,
    task_spec,
)
from xlt_jax.data.tasks.sources import MissingDataError, default_source, load

__all__ = [
    "IGNORE_INDEX",
    "TASKS",
    "Features",
    "MissingDataError",
    "TaskData",
    "TaskSpec",
    "bucket_length",
    "concat_outputs",
    "default_source",
    "iterate_batches",
    "load",
    "num_batches",
    "prepare",
    "task_spec",
]
