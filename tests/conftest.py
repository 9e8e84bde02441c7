"""Shared test setup: 8 fake CPU devices and the real data directory."""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import importlib  # noqa: E402

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

from xlt_jax import host_allocator  # noqa: E402
from xlt_jax.data import paths  # noqa: E402

host_allocator.retain_freed_memory()  # as the binaries do: CPU steps without re-faulting their temporaries

# Hostile-input fuzzing (tests/fuzz_helpers.py): `make test` runs a small deterministic sample per reader,
# `make fuzz` (`--hypothesis-profile=fuzz`) many random cases. Each case also has a hard time limit.
_FUZZ_COMMON = dict(deadline=5000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("xlt-sample", max_examples=50, derandomize=True, database=None, **_FUZZ_COMMON)
settings.register_profile("fuzz", max_examples=800, **_FUZZ_COMMON)


@pytest.fixture(scope="session")
def data_dir() -> pathlib.Path:
    """The filled data directory (`make data`); tests skip nothing: a missing directory is an error."""
    root = paths.data_dir()
    if not (root / "ud" / "en_ewt" / "dev.conllu.gz").exists():
        raise RuntimeError(
            f"data directory {root} is not filled; run `make data` (or python -m xlt_jax.data.download)"
        )
    return root


# Sentences of the tiny tokenizer: enough real English for ~1000 BPE pieces, trained in well under a second.
TINY_TOKENIZER_EWT_SENTENCES = 3000
TINY_TOKENIZER_VOCAB = 1000


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory, data_dir: pathlib.Path):
    """A ~1000-piece BPE `Tokenizer` (no sentinels) trained once per session on real English text:
    the first 3000 UD EWT train sentences plus the Leipzig sample. Saved under a session temp dir
    (`tiny_tokenizer.metadata`, `Tokenizer.load(<dir>/en.model)`)."""
    import itertools

    from xlt_jax.data.corpora import conllu_sentences
    from xlt_jax.data.readers.text import read_lines
    from xlt_jax.data.tokenizer import train_tokenizer

    ewt = conllu_sentences(data_dir / "ud" / "en_ewt" / "train.conllu.gz")
    texts = list(itertools.islice(ewt, TINY_TOKENIZER_EWT_SENTENCES))
    texts += read_lines(data_dir / "raw" / "lingua_leipzig_sample" / "en.sentences.txt.gz")
    out = tmp_path_factory.mktemp("tiny_tokenizer") / "en"
    return train_tokenizer({"en": texts}, TINY_TOKENIZER_VOCAB, out, seed=0)


@pytest.fixture(scope="session")
def original_order_tagger():
    """`original_order_tagger(data) -> [F, L] predictions` of a NER tagger that emits, on each word's labelled
    piece, the tag the word has in the original sentence (its gold tag before any reordering and BIO
    re-canonicalisation); -100 elsewhere."""
    import numpy as np

    from xlt_jax.data.readers.tagging import NER_TAGS

    def predict(data):
        word_index, example_id = data.features["word_index"], data.features["example_id"]
        predictions = np.full(word_index.shape, -100, np.int64)
        rows, cols = np.nonzero(word_index >= 0)
        tags = [data.examples[example_id[r]].tags[word_index[r, c]] for r, c in zip(rows, cols, strict=True)]
        predictions[rows, cols] = [NER_TAGS.index(t) for t in tags]
        return predictions

    return predict


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory: pytest.TempPathFactory):
    """Persistent compilation cache for one test module's runs (reset afterwards so other modules are unaffected)."""
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    previous = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(tmp_path_factory.mktemp("jax_cache")))
    compilation_cache.reset_cache()
    yield
    jax.config.update("jax_compilation_cache_dir", previous)
    compilation_cache.reset_cache()


@pytest.fixture(scope="session")
def pretrain_smoke(tmp_path_factory: pytest.TempPathFactory):
    """`pretrain_smoke(config_file, arg, steps, **data_overrides) -> workdir`: a tiny pretraining run with a
    configs/pretrain/ smoke config, one checkpoint at the last step, no held-out evaluation."""
    import runpy

    from xlt_jax.training import loop

    configs = pathlib.Path(__file__).resolve().parents[1] / "configs" / "pretrain"

    def run(config_file: str, arg: str, steps: int, corpus_source: str | None = None) -> pathlib.Path:
        config = runpy.run_path(str(configs / config_file))["get_config"](arg)
        if corpus_source is not None:
            config.corpus.source = corpus_source
        config.data.cache_dir = str(tmp_path_factory.mktemp("shards"))
        config.train.steps = steps
        config.train.eval_every = 0
        config.train.checkpoint_every = steps
        config.train.log_every = steps
        workdir = tmp_path_factory.mktemp(pathlib.Path(config_file).stem)
        loop.run(config, workdir)
        return workdir

    return run


def require_extra(module: str, extra: str):
    """Import an optional dependency for a test module. Missing: skipped, unless XLT_REQUIRE_EXTRAS=1
    (`make test` and CI set it, and install every extra), where a missing extra is a failure, not a skip."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("XLT_REQUIRE_EXTRAS") == "1":
            pytest.fail(f"extra {extra!r} is required here (XLT_REQUIRE_EXTRAS=1) but {module} is not installed")
        pytest.skip(f"extra {extra!r} not installed (pip install -e .[{extra}])", allow_module_level=True)
