"""Text of a TensorFlow Datasets split (e.g. `wiki40b/en`), for pretraining on TPU VMs (`tfds:NAME:SPLIT` sources)."""

from __future__ import annotations

import os

from xlt_jax.errors import ConfigError


def tfds_sentences(
    name: str, split: str, limit: int | None = None, *, feature: str | None = None
) -> list[str]:
    """Text of a TensorFlow Datasets split (e.g. `wiki40b/en`, `train`), via TFDS's random-access data source.

    `tfds.data_source` reads prepared array_record files without TensorFlow (ENV_NOTES §1). It never
    prepares: build the dataset first (`tfds build NAME --file_format=array_record`); one stored only as
    tfrecord must be converted once (`tfds convert_format`, which does need TensorFlow).
    The data directory is `TFDS_DATA_DIR` read at call time (TFDS itself reads it once, at import), else
    TFDS's default (`~/tensorflow_datasets`). The text field is `feature`, else the first of
    `text`/`sentence`/`content`. wiki40b markup (`_START_PARAGRAPH_`, `_NEWLINE_`) is turned into one line
    per paragraph line; headings are dropped.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ConfigError(
            f"source tfds:{name}:{split} needs the `tfds` extra (pip install 'xlt_jax[tfds]'): {e}"
        ) from e
    data_dir = os.environ.get("TFDS_DATA_DIR") or None
    try:
        # download=False: reading never starts TFDS's download-and-prepare (possibly hundreds of GB).
        source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except (ValueError, NotImplementedError) as e:  # unknown name (then every known name) or split; not
        reason = (str(e).splitlines() or [type(e).__name__])[0]  # prepared, or tfrecord only
        where = data_dir or "the TFDS default data directory"
        raise ConfigError(
            f"source tfds:{name}:{split} (data dir: {where}): {reason} (the reader needs the dataset prepared "
            "there in array_record format)"
        ) from e
    count = len(source) if limit is None else min(int(limit), len(source))
    out: list[str] = []
    for index in range(count):
        record = source[index]
        field = feature or next((k for k in ("text", "sentence", "content") if k in record), None)
        if field is None or field not in record:
            raise ConfigError(f"source tfds:{name}:{split}: no text feature {feature!r} in {sorted(record)}")
        value = record[field]
        text = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        out.extend(_wiki40b_lines(text) if "_START_" in text else [t for t in text.splitlines() if t.strip()])
    return out


def _wiki40b_lines(text: str) -> list[str]:
    lines: list[str] = []
    blocks = text.split("_START_PARAGRAPH_")[1:]
    for block in blocks:
        paragraph = block.split("_START_SECTION_")[0].split("_START_ARTICLE_")[0]
        lines.extend(s.strip() for s in paragraph.split("_NEWLINE_") if s.strip())
    return lines
