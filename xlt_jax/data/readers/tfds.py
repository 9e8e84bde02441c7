"""Text of a TensorFlow Datasets split (e.g. `wiki40b/en`), for pretraining on TPU VMs (`tfds:NAME:SPLIT` sources)."""

from __future__ import annotations

from xlt_jax.errors import ConfigError


def tfds_sentences(
    name: str, split: str, limit: int | None = None, *, feature: str | None = None
) -> list[str]:
    """Text of a TensorFlow Datasets split (e.g. `wiki40b/en`, `train`), via TFDS's random-access data source.

    `tfds.data_source` reads prepared array_record files without TensorFlow (ENV_NOTES §1). The text
    field is `feature`, else the first of `text`/`sentence`/`content`. wiki40b markup
    (`_START_PARAGRAPH_`, `_NEWLINE_`) is turned into one line per paragraph line; headings are dropped.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ConfigError(
            f"source tfds:{name}:{split} needs the `tfds` extra (pip install 'xlt_jax[tfds]'): {e}"
        ) from e
    source = tfds.data_source(name, split=split)
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
