"""A second run of the same pretraining command reuses JAX's persistent compilation cache.

Its own module: the other train-loop tests share a module-wide cache, which a run inherits instead of its
configured one.
"""

from __future__ import annotations

import pathlib
import runpy

import jax
import jax.monitoring
import pytest

from xlt_jax.training import loop

BILINGUAL = pathlib.Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "bilingual.py"


@pytest.mark.slow  # two full smoke runs (~1 min): `make test-slow`
def test_rerun_in_a_new_workdir_hits_the_persistent_cache(data_dir, tmp_path):
    events: list[str] = []
    jax.monitoring.register_event_listener(lambda name, **_: events.append(name))
    assert not jax.config.jax_compilation_cache_dir
    config = runpy.run_path(str(BILINGUAL))["get_config"]("smoke")
    config.data.cache_dir = str(tmp_path / "shards")
    config.train.update(steps=2, eval_every=0, checkpoint_every=2, log_every=2)
    config.train.compilation_cache = str(tmp_path / "jax_cache")

    loop.run(config, tmp_path / "first")
    misses = events.count("/jax/compilation_cache/cache_misses")
    assert misses > 0 and "/jax/compilation_cache/cache_hits" not in events
    assert any((tmp_path / "jax_cache").iterdir())
    assert not jax.config.jax_compilation_cache_dir  # restored after the run

    events.clear()
    loop.run(config, tmp_path / "second")
    assert events.count("/jax/compilation_cache/cache_hits") >= 1  # the train step, at least
    assert events.count("/jax/compilation_cache/cache_misses") < misses
