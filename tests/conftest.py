"""Shared test setup: 8 fake CPU devices and the real data directory."""

from __future__ import annotations

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

from xlt_jax.data import paths  # noqa: E402


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
