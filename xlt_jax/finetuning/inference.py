"""Running a task model over all feature rows: a jitted predict step and the batching around it.

Every process builds the same global batch on the host (`iterate_batches` with one "host"), keeps the
example ids of all rows, and feeds only the rows its devices hold; outputs come back replicated, so every
process ends with the predictions of every row in feature order. Batches are cropped to bucket lengths,
so the step compiles once per bucket, not once per batch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import Mesh

from xlt_jax.data import tasks
from xlt_jax.data.tasks.base import DEFAULT_BUCKET
from xlt_jax.training import partitioning
from xlt_jax.training.state import ModelDef

PredictStep = Callable[[dict, dict[str, jax.Array]], dict[str, jax.Array]]
PostProcess = Callable[[Mapping[str, np.ndarray], dict[str, np.ndarray]], dict[str, np.ndarray]]
INPUT_KEYS = ("input_ids", "attention_mask")


def make_predict_step(model_def: ModelDef, *, mesh: Mesh, param_shardings: dict) -> PredictStep:
    """Jitted `(params, batch) -> model.predict(batch)`, outputs replicated on every device."""

    def predict(params: dict, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        return model_def.merge(params).predict(batch)

    return jax.jit(
        predict,
        in_shardings=(param_shardings, partitioning.batch_sharding(mesh, 1)),
        out_shardings=partitioning.replicated(mesh),
    )


def _fill(array: np.ndarray) -> float:
    return -np.inf if np.issubdtype(array.dtype, np.floating) else tasks.IGNORE_INDEX


def predict_features(
    step: PredictStep,
    params: dict,
    features: tasks.Features,
    *,
    batch_size: int,
    mesh: Mesh,
    rules: partitioning.LogicalRules,
    bucket: int = DEFAULT_BUCKET,
    keys: Sequence[str] = INPUT_KEYS,
    postprocess: PostProcess | None = None,
) -> dict[str, np.ndarray]:
    """Outputs for every row of `features`, in row order (padding rows dropped, bucketed widths joined).

    `postprocess(host_batch, outputs)` runs per batch on the host, e.g. to pool hidden states while the
    batch's attention mask is at hand.
    """
    rows = partitioning.process_batch_rows(mesh, batch_size)
    collected: dict[str, list[np.ndarray]] = {}
    example_ids: list[np.ndarray] = []
    with partitioning.sharding_context(mesh, rules):
        for batch in tasks.iterate_batches(features, batch_size, bucket=bucket, keys=(*keys, "example_id")):
            ids = batch.pop("example_id")
            local = {k: v[rows] for k, v in batch.items()}
            out = jax.device_get(step(params, partitioning.global_batch(local, mesh)))
            out = {k: np.asarray(v) for k, v in out.items()}
            if postprocess is not None:
                out = postprocess(batch, out)
            for key, value in out.items():
                collected.setdefault(key, []).append(value)
            example_ids.append(ids)
    return {
        key: tasks.concat_outputs(values, example_ids, fill=_fill(values[0])) for key, values in collected.items()
    }
