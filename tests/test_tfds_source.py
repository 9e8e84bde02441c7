"""`tfds:NAME:SPLIT` pretraining sources on a real TFDS dataset, built here from files of the data directory.

No network and no TensorFlow (ENV_NOTES §1): a `GeneratorBasedBuilder` with `file_format="array_record"`
prepares the Leipzig English sample (and a few UD EWT dev sentences, which the evaluation filter must
drop) as wiki40b-style articles into a temporary data directory; the project's reader then reads it
through `tfds.data_source`, in this process and in a fresh one that has never seen the builder class.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import require_extra

from xlt_jax.data import corpora
from xlt_jax.data.readers.text import read_lines
from xlt_jax.errors import ConfigError

tfds = require_extra("tensorflow_datasets", "tfds")

NAME = "xlt_leipzig_markup"  # unique: TFDS registers builder classes by name
PER_ARTICLE = 5


class XltLeipzigMarkup(tfds.core.GeneratorBasedBuilder):
    """Sentences grouped PER_ARTICLE at a time into wiki40b markup (article title, section, paragraph
    lines joined by `_NEWLINE_`), so the reader's markup handling runs on what TFDS really stores."""

    VERSION = tfds.core.Version("1.0.0")
    SPLITS: dict[str, list[str]] = {}  # set before download_and_prepare

    def _info(self):
        features = tfds.features.FeaturesDict({"text": tfds.features.Text(), "id": np.int64})
        return tfds.core.DatasetInfo(builder=self, features=features)

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(lines) for split, lines in self.SPLITS.items()}

    def _generate_examples(self, lines):
        for i in range(0, len(lines), PER_ARTICLE):
            first, second = "_NEWLINE_".join(lines[i : i + 3]), "_NEWLINE_".join(lines[i + 3 : i + PER_ARTICLE])
            text = (f"\n_START_ARTICLE_\nArticle {i}\n_START_SECTION_\nIntro\n_START_PARAGRAPH_\n{first}"
                    f"\n_START_SECTION_\nMore\n_START_PARAGRAPH_\n{second}")
            yield i, {"id": i, "text": text}


@pytest.fixture(scope="module")
def prepared(data_dir, tmp_path_factory):
    """(TFDS data dir, {split: sentences}); validation ends with five UD EWT *dev* sentences."""
    leipzig = [s.strip() for s in read_lines(data_dir / "raw/lingua_leipzig_sample/en.sentences.txt.gz")]
    ewt_dev = list(itertools.islice(corpora.conllu_sentences(data_dir / "ud/en_ewt/dev.conllu.gz"), PER_ARTICLE))
    XltLeipzigMarkup.SPLITS = {"train": leipzig[:800], "validation": leipzig[800:] + ewt_dev}
    root = tmp_path_factory.mktemp("tfds")
    XltLeipzigMarkup(data_dir=str(root), file_format="array_record").download_and_prepare()
    return root, {"train": leipzig[:800], "validation": leipzig[800:], "ewt_dev": ewt_dev}


def test_prepared_as_array_record_without_tensorflow(prepared):
    root, _ = prepared
    files = sorted(p.name for p in (root / NAME / "1.0.0").iterdir())
    assert f"{NAME}-train.array_record-00000-of-00001" in files
    assert "tensorflow" not in sys.modules  # the `tfds` extra needs no TensorFlow


def test_tfds_source_reads_the_built_dataset(prepared, monkeypatch):
    root, splits = prepared
    monkeypatch.setenv("TFDS_DATA_DIR", str(root))  # read at call time, after TFDS was imported
    train = corpora.read_source(f"tfds:{NAME}:1.0.0:train")
    # TFDS stores records in key-hash order: same sentences, not the same order; no titles or headings.
    assert len(train) == 800 and sorted(train) == sorted(splits["train"])
    limited = corpora.read_source(f"tfds:{NAME}:train", limit=7)
    assert len(limited) == 7 and set(limited) <= set(splits["train"])
    validation = corpora.read_source(f"tfds:{NAME}:validation")
    assert set(splits["ewt_dev"]) <= set(validation)  # unfiltered: the source as stored
    kept = corpora.read_source(f"tfds:{NAME}:validation", lang="en")  # minus English evaluation text
    assert sorted(kept) == sorted(splits["validation"])


def test_tfds_source_in_a_fresh_process_without_the_builder(prepared):
    """What a TPU VM does: read prepared files with no builder code, through the project's source string."""
    root, splits = prepared
    code = (
        "import json, sys\n"
        "from xlt_jax.data import corpora\n"
        f"s = corpora.read_source('tfds:{NAME}:train')\n"
        "print(json.dumps({'sentences': s, 'tensorflow': 'tensorflow' in sys.modules}))\n"
    )
    env = {**os.environ, "TFDS_DATA_DIR": str(root)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(out["sentences"]) == sorted(splits["train"])
    assert out["tensorflow"] is False


def test_unknown_or_unprepared_dataset_is_a_config_error(prepared, monkeypatch, tmp_path):
    root, _ = prepared
    monkeypatch.setenv("TFDS_DATA_DIR", str(root))
    with pytest.raises(ConfigError, match=r"tfds:no_such_corpus:train .*not found"):
        corpora.read_source("tfds:no_such_corpus:train")
    with pytest.raises(ConfigError, match=r"Unknown split 'test'"):
        corpora.read_source(f"tfds:{NAME}:test")
    # Registered but not prepared in this data dir: an error, never a download-and-prepare.
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match=r"array_record"):
        corpora.read_source(f"tfds:{NAME}:train")
    assert not any(tmp_path.iterdir())
