"""SentencePiece tokenizer with the reference's fixed special ids, trained on temperature-mixed text.

Ids [0, 5) are `<s> <pad> </s> <unk> <mask>` exactly as `vocab.SpecialIds` (REFERENCE_SPEC §1), then
the 256 byte-fallback pieces, then the learned pieces; the base size V counts all of them. Derived
(transliterated) copies and T5 sentinels are not SentencePiece pieces: they live above V in the
`VocabLayout` (REFERENCE_SPEC §1.4, §3.4), and `num_sentinels` is stored in the tokenizer metadata.

A saved tokenizer is a directory with `spm.model` (the serialized SentencePiece model) and
`tokenizer.json` (vocabulary size, languages, α, seed, sentinels, sentences used per language).
"""

from __future__ import annotations

import io
import json
import os
import pathlib
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import sentencepiece as spm
from etils import epath

from xlt_jax import storage
from xlt_jax.data import hashing
from xlt_jax.data.sampling import temperature_probs
from xlt_jax.data.vocab import SPECIALS, VocabLayout
from xlt_jax.errors import DataFormatError

MODEL_FILE = "spm.model"
METADATA_FILE = "tokenizer.json"
FORMAT = "xlt_jax.tokenizer/1"
SPECIAL_PIECES = {
    SPECIALS.bos: "<s>",
    SPECIALS.pad: "<pad>",
    SPECIALS.eos: "</s>",
    SPECIALS.unk: "<unk>",
    SPECIALS.mask: "<mask>",
}
# Pieces that never come out of text and that `decode` drops unless asked to show them.
_CONTROL_IDS = (SPECIALS.bos, SPECIALS.pad, SPECIALS.eos)
_COPY_OPEN, _COPY_CLOSE = "⟦", "⟧"
# Salts of the hashing streams used while mixing the training text.
_SALT_LANGUAGE, _SALT_SHUFFLE = 0x70C1, 0x70C2
# Unigram EM sums per thread, so its pieces depend on the thread count; a fixed default keeps models
# identical across machines (BPE gives identical pieces for any thread count).
DEFAULT_TRAIN_THREADS = 4


class Tokenizer:
    """A trained SentencePiece model plus the metadata needed to rebuild the id layout."""

    def __init__(
        self, model_proto: bytes, metadata: Mapping[str, Any] | None = None, *, source: str = "<memory>"
    ):
        self._proto = bytes(model_proto)
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=self._proto)
        except (RuntimeError, OSError) as e:
            raise DataFormatError(source, None, f"not a SentencePiece model: {e}") from e
        _check_special_pieces(self._sp, source)
        meta = dict(metadata or {})
        meta.setdefault("format", FORMAT)
        meta.setdefault("num_sentinels", 0)
        meta["base_size"] = self._sp.get_piece_size()
        self.metadata: dict[str, Any] = meta

    # -- persistence --------------------------------------------------------------------------------

    @classmethod
    def load(cls, path_or_dir: str | os.PathLike) -> Tokenizer:
        """Load a directory written by `save`, or a `X.model` file (metadata from `X.json` if present); local
        or `gs://`."""
        path = epath.Path(path_or_dir)
        if path.is_dir():
            model_path, meta_path = path / MODEL_FILE, path / METADATA_FILE
        else:
            model_path, meta_path = path, path.with_suffix(".json")
        if not model_path.is_file():
            raise FileNotFoundError(f"{model_path}: no tokenizer model (expected a dir with {MODEL_FILE})")
        metadata = _read_metadata(meta_path) if meta_path.is_file() else None
        tok = cls(model_path.read_bytes(), metadata, source=os.fspath(model_path))
        recorded = (metadata or {}).get("base_size")
        if recorded is not None and recorded != tok.base_size:
            raise DataFormatError(meta_path, None, f"base_size {recorded} != {tok.base_size} model pieces")
        return tok

    def save(self, directory: str | os.PathLike) -> epath.Path:
        """Write `spm.model` and `tokenizer.json` into `directory` (created if needed; local or `gs://`)."""
        directory = epath.Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._write(directory / MODEL_FILE, directory / METADATA_FILE)
        return directory

    def _write(self, model_path: os.PathLike, meta_path: os.PathLike) -> None:
        # Atomic writes, so a crash never leaves a half-written model next to a valid metadata file.
        for target, data in ((model_path, self._proto), (meta_path, _dump_metadata(self.metadata))):
            storage.atomic_write(target, data)

    def __getstate__(self) -> dict[str, Any]:
        return {"proto": self._proto, "metadata": self.metadata}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["proto"], state["metadata"])

    # -- vocabulary ---------------------------------------------------------------------------------

    @property
    def base_size(self) -> int:
        """V: number of SentencePiece pieces (specials and byte pieces included)."""
        return int(self.metadata["base_size"])

    @property
    def num_sentinels(self) -> int:
        return int(self.metadata["num_sentinels"])

    @property
    def languages(self) -> list[str]:
        return list(self.metadata.get("languages", []))

    @property
    def model_proto(self) -> bytes:
        return self._proto

    def layout(self, copies: int = 1) -> VocabLayout:
        """Id layout for `copies` blocks of V ids (2 with transliteration) plus this tokenizer's sentinels."""
        return VocabLayout(base_size=self.base_size, copies=copies, num_sentinels=self.num_sentinels)

    @property
    def sp(self) -> spm.SentencePieceProcessor:
        """The underlying SentencePiece processor (for offsets and other low-level calls)."""
        return self._sp

    def piece(self, token_id: int) -> str:
        """Surface piece of a base id in [0, V) (`▁` marks a preceding space)."""
        if not 0 <= int(token_id) < self.base_size:
            raise ValueError(f"id {token_id} is not a base piece id (0 <= id < {self.base_size})")
        return self._sp.id_to_piece(int(token_id))

    # -- encoding -----------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        """Piece ids of `text`, without bos/eos."""
        return self._sp.encode(text)

    def encode_batch(self, texts: Sequence[str], *, num_threads: int = -1) -> list[np.ndarray]:
        """int32 id arrays for many texts, encoded by SentencePiece's thread pool.

        `num_threads=-1` lets SentencePiece use every core; the ids do not depend on it. SentencePiece
        hands out read-only buffers; they are copied (about 3% of the time) so callers may edit them.
        """
        if not texts:
            return []
        encoded = self._sp.encode(list(texts), return_type="numpy", num_threads=num_threads)
        return [ids.copy() for ids in encoded]

    # -- decoding -----------------------------------------------------------------------------------

    def decode(
        self,
        ids: Iterable[int] | np.ndarray,
        *,
        layout: VocabLayout | None = None,
        skip_specials: bool = True,
        mark_copies: bool = False,
    ) -> str:
        """Text of `ids`.

        Ids in a transliterated copy [kV, (k+1)V) decode as id − kV; with `mark_copies` each run of copy
        ids is wrapped in ⟦…⟧. `<s>`, `</s>`, `<pad>` and sentinels are dropped, or shown as their piece
        names (`<extra_id_k>` for sentinels) when `skip_specials=False`. `<mask>` and `<unk>` always show.
        `layout` defaults to two copies when the tokenizer has no sentinels, else to one copy (pass the
        model's layout for a transliterated T5 model).
        """
        arr = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64).reshape(-1)
        if layout is None:
            layout = self.layout(copies=1 if self.num_sentinels else 2)
        if arr.size and (arr.min() < 0 or arr.max() >= layout.size):
            bad = arr[(arr < 0) | (arr >= layout.size)][0]
            raise ValueError(f"id {bad} outside the vocabulary layout [0, {layout.size})")
        V = self.base_size
        natural_end = V * layout.copies
        if skip_specials and not mark_copies and not np.any(arr >= natural_end):
            # SentencePiece itself drops control pieces, so the whole sequence decodes in one call.
            return self._sp.decode((arr % V).tolist())
        return "".join(self._decode_runs(arr, layout, skip_specials, mark_copies))

    def _decode_runs(self, arr: np.ndarray, layout: VocabLayout, skip_specials: bool, mark_copies: bool):
        """Decode runs of same-copy pieces separately so copies and specials can be shown in place."""
        V = self.base_size
        natural_end = V * layout.copies
        run: list[int] = []
        run_copy = 0
        after_text = False  # a run that starts a word gets its space back only after other text

        def flush() -> str:
            nonlocal after_text
            text = self._sp.decode(run)
            if mark_copies and run_copy > 0:
                text = f"{_COPY_OPEN}{text}{_COPY_CLOSE}"
            if after_text and self._sp.id_to_piece(run[0]).startswith("▁"):
                text = " " + text
            after_text = True
            run.clear()
            return text

        for token in arr.tolist():
            copy, base = divmod(token, V)
            if token >= natural_end or base in _CONTROL_IDS:
                if run:
                    yield flush()
                if skip_specials:
                    continue
                after_text = False
                if token >= natural_end:
                    yield f"<extra_id_{layout.size - 1 - token}>"
                else:
                    name = SPECIAL_PIECES[base]
                    yield f"{_COPY_OPEN}{name}{_COPY_CLOSE}" if mark_copies and copy else name
                continue
            if run and copy != run_copy:
                yield flush()
            run_copy = copy
            run.append(base)
        if run:
            yield flush()


def _check_special_pieces(sp: spm.SentencePieceProcessor, source: str) -> None:
    """Every part of xlt_jax assumes the reference's special ids; a foreign model is rejected."""
    size = sp.get_piece_size()
    found = {i: sp.id_to_piece(i) for i in SPECIAL_PIECES if i < size}
    if found != SPECIAL_PIECES:
        raise DataFormatError(source, None, f"special pieces {found} differ from the fixed {SPECIAL_PIECES}")


def _dump_metadata(metadata: Mapping[str, Any]) -> bytes:
    return (json.dumps(metadata, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _read_metadata(path: epath.Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, f"invalid JSON: {e.msg}") from e
    if not isinstance(meta, dict):
        raise DataFormatError(path, 1, "tokenizer metadata must be a JSON object")
    return meta


# -- training -------------------------------------------------------------------------------------


def _language_key(lang: str) -> int:
    """Stable integer per language name, so adding a language does not reshuffle the others."""
    return zlib.crc32(lang.encode("utf-8"))


def sentence_budget(counts: Mapping[str, int], alpha: float, total: int) -> dict[str, int]:
    """Sentences to draw per language so that a corpus of about `total` sentences follows q_l ∝ p_l^α.

    Every language with text gets at least one sentence. This is how XLM-R/mT5 build their
    SentencePiece training text: the tokenizer sees languages in the proportions the model will.
    """
    q = temperature_probs(counts, alpha)
    return {lang: max(1, round(float(q_l) * total)) for lang, q_l in zip(counts, q, strict=True)}


def _draw(sentences: list[str], count: int, seed: int, lang: str) -> list[str]:
    """`count` sentences of one language: whole passes when upsampling, then a seeded subset."""
    passes, rest = divmod(count, len(sentences))
    order = hashing.rng(seed, _SALT_LANGUAGE, _language_key(lang)).permutation(len(sentences))[:rest]
    return sentences * passes + [sentences[i] for i in np.sort(order)]


def mix_sentences(
    texts_by_lang: Mapping[str, Iterable[str]],
    *,
    alpha: float,
    seed: int,
    sentences_per_lang: int | None = None,
) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """Temperature-mixed, shuffled training sentences, plus available and used counts per language.

    The budget is `sentences_per_lang × #languages` sentences (default: all available sentences);
    languages above their share are subsampled without replacement, those below are repeated.
    """
    cleaned: dict[str, list[str]] = {}
    for lang, texts in texts_by_lang.items():
        cleaned[lang] = [t.strip() for t in texts if t and t.strip()]
        if not cleaned[lang]:
            raise ValueError(f"language {lang!r}: no non-empty sentences to train the tokenizer on")
    if not cleaned:
        raise ValueError("train_tokenizer needs text for at least one language")
    available = {lang: len(s) for lang, s in cleaned.items()}
    total = sum(available.values()) if sentences_per_lang is None else sentences_per_lang * len(cleaned)
    used = sentence_budget(available, alpha, total)
    mixed = [s for lang, sents in cleaned.items() for s in _draw(sents, used[lang], seed, lang)]
    order = hashing.rng(seed, _SALT_SHUFFLE).permutation(len(mixed))
    return [mixed[i] for i in order], available, used


def train_tokenizer(
    texts_by_lang: Mapping[str, Iterable[str]],
    vocab_size: int,
    out_prefix: str | os.PathLike | None,
    *,
    alpha: float = 0.3,
    seed: int = 0,
    model_type: str = "bpe",
    sentences_per_lang: int | None = None,
    character_coverage: float = 0.9995,
    num_sentinels: int = 0,
    hard_vocab_limit: bool = True,
    num_threads: int = DEFAULT_TRAIN_THREADS,
    normalization: str = "nmt_nfkc",
) -> Tokenizer:
    """Train a SentencePiece model on temperature-mixed sentences of several languages.

    Mixing (see `mix_sentences`): p_l are SENTENCE counts, and the training text holds about q_l·T
    sentences of language l (T = all sentences, or `sentences_per_lang` × #languages), subsampled or
    repeated with seeded draws. Sentence counts rather than tokens because they are known before any
    tokenizer exists (approximate: a language with longer sentences gets more characters per share).

    `vocab_size` counts every piece (5 specials, 256 bytes, learned pieces). `<mask>` is a
    user-defined piece, so the literal text `<mask>` encodes to id 4 (handy for fill-mask probes).
    The result is identical for identical inputs and arguments (BPE: for any `num_threads`).
    When `out_prefix` is given, `{out_prefix}.model` and `{out_prefix}.json` are written
    (`Tokenizer.load` reads either form; `save(dir)` writes a directory). `hard_vocab_limit=False`
    lets SentencePiece return fewer pieces when the text is too small.
    """
    if model_type not in ("bpe", "unigram"):
        raise ValueError(f"model_type must be 'bpe' or 'unigram', got {model_type!r}")
    if num_sentinels < 0:
        raise ValueError(f"num_sentinels must be >= 0, got {num_sentinels}")
    sentences, available, used = mix_sentences(
        texts_by_lang, alpha=alpha, seed=seed, sentences_per_lang=sentences_per_lang
    )
    writer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=writer,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=character_coverage,
        byte_fallback=True,
        bos_id=SPECIALS.bos,
        bos_piece=SPECIAL_PIECES[SPECIALS.bos],
        pad_id=SPECIALS.pad,
        pad_piece=SPECIAL_PIECES[SPECIALS.pad],
        eos_id=SPECIALS.eos,
        eos_piece=SPECIAL_PIECES[SPECIALS.eos],
        unk_id=SPECIALS.unk,
        unk_piece=SPECIAL_PIECES[SPECIALS.unk],
        user_defined_symbols=[SPECIAL_PIECES[SPECIALS.mask]],  # first free id after the four above: 4
        hard_vocab_limit=hard_vocab_limit,
        normalization_rule_name=normalization,
        # We already sampled and shuffled (seeded); SentencePiece must take the text as given.
        input_sentence_size=0,
        shuffle_input_sentence=False,
        num_threads=num_threads,
        minloglevel=2,
    )
    metadata = {
        "format": FORMAT,
        "vocab_size": vocab_size,
        "model_type": model_type,
        "languages": list(available),
        "alpha": alpha,
        "seed": seed,
        "num_sentinels": num_sentinels,
        "character_coverage": character_coverage,
        "normalization": normalization,
        "sentences_available": available,
        "sentences_used": used,
        "sentencepiece_version": spm.__version__,
    }
    tok = Tokenizer(writer.getvalue(), metadata)
    if out_prefix is not None:
        prefix = pathlib.Path(out_prefix)
        prefix.parent.mkdir(parents=True, exist_ok=True)
        tok._write(prefix.with_name(prefix.name + ".model"), prefix.with_name(prefix.name + ".json"))
    return tok
