"""Tokenize a corpus once into memory-mapped id shards, cached by content hash.

Pretraining reads the same corpus for hundreds of thousands of steps, so SentencePiece runs once: every
non-blank line becomes `<s> ids </s>` (REFERENCE_SPEC §2.1), the lines are concatenated into flat int32
shards on disk, and a line-offset array records where each line starts. Later runs (and every host of a
pod) memory-map the shards. The cache directory is named by a hash of the text and the tokenizer, so a
changed corpus or tokenizer can never silently reuse stale ids.

Layout of one cached corpus (`<cache_dir>/<key>/`):
  index.json            format, key, tokenizer fingerprint, counts, shard list
  tokens-00000.bin      raw little-endian int32 ids (np.memmap), `<s> … </s>` per line
  offsets-00000.npy     int64 start of every line inside its shard, plus the shard length at the end
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np

from xlt_jax.data.io import open_lines
from xlt_jax.data.vocab import SPECIALS
from xlt_jax.errors import ConfigError, DataFormatError

FORMAT_VERSION = 1
TOKEN_DTYPE = np.dtype("<i4")
LINES_PER_CHUNK = 4096  # lines handed to one encode_batch call
DEFAULT_SHARD_TOKENS = 1 << 26  # 256 MiB of int32 per shard file


class BatchEncoder(Protocol):
    """What sharding needs of a tokenizer (`xlt_jax.data.tokenizer.Tokenizer` satisfies it)."""

    base_size: int

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]: ...


def default_cache_dir() -> pathlib.Path:
    """`$XLT_CACHE_DIR/shards`, default `~/.cache/xlt_jax/shards`."""
    root = os.environ.get("XLT_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "xlt_jax")
    return pathlib.Path(root) / "shards"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A stable hash of the tokenizer model, part of the cache key.

    Uses `tokenizer.fingerprint` when the tokenizer provides one, else the serialized SentencePiece model
    (`Tokenizer.model_proto`, or `serialized_model_proto()` of the tokenizer or its `sp` attribute).
    """
    fp = getattr(tokenizer, "fingerprint", None)
    if callable(fp):
        fp = fp()
    if isinstance(fp, str) and fp:
        return fp
    proto = getattr(tokenizer, "model_proto", None)
    if isinstance(proto, bytes):
        return hashlib.sha256(proto).hexdigest()
    for holder in (tokenizer, getattr(tokenizer, "sp", None), getattr(tokenizer, "processor", None)):
        proto = getattr(holder, "serialized_model_proto", None)
        if callable(proto):
            return hashlib.sha256(proto()).hexdigest()
    raise ConfigError(
        f"cannot fingerprint tokenizer of type {type(tokenizer).__name__}: give it a `fingerprint` "
        "attribute or pass tokenizer_fingerprint= explicitly"
    )


def hash_lines(lines: Iterable[str]) -> str:
    """sha256 of the lines as newline-terminated UTF-8, the content part of the cache key."""
    h = hashlib.sha256()
    for line in lines:
        h.update(line.encode("utf-8"))
        h.update(b"\n")
    return h.hexdigest()


def hash_files(paths: Sequence[str | os.PathLike]) -> str:
    """sha256 over the bytes of the files, in order (streamed, so large files cost no memory)."""
    h = hashlib.sha256()
    for path in paths:
        if not os.path.exists(path):
            raise DataFormatError(path, None, "file does not exist")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


def frame_lines(encoded: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate encoded lines as `<s> ids </s>`; return (flat ids, line lengths incl. specials)."""
    lengths = np.fromiter((len(a) for a in encoded), dtype=np.int64, count=len(encoded)) + 2
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    flat = np.empty(int(lengths.sum()), dtype=TOKEN_DTYPE)
    is_content = np.ones(flat.shape, dtype=bool)
    is_content[starts] = False
    is_content[starts + lengths - 1] = False
    flat[starts] = SPECIALS.bos
    flat[starts + lengths - 1] = SPECIALS.eos
    if len(encoded):
        flat[is_content] = np.concatenate([np.asarray(a, dtype=TOKEN_DTYPE) for a in encoded])
    return flat, lengths


@dataclasses.dataclass
class ShardedCorpus:
    """A tokenized corpus on disk: one concatenated `<s> … </s>` stream split over memory-mapped shards."""

    directory: pathlib.Path
    index: dict[str, Any]
    shards: list[np.ndarray]  # int32 memmaps
    shard_starts: np.ndarray  # int64 [num_shards + 1], global position of each shard's first token
    line_offsets: np.ndarray  # int64 [num_lines + 1], global position of each line's `<s>`

    @classmethod
    def open(cls, directory: str | os.PathLike) -> ShardedCorpus:
        directory = pathlib.Path(directory)
        index_path = directory / "index.json"
        try:
            index = json.loads(index_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataFormatError(index_path, None, f"unreadable shard index: {e}") from e
        if index.get("format") != FORMAT_VERSION:
            raise DataFormatError(index_path, None, f"shard format {index.get('format')} != {FORMAT_VERSION}")
        shards, offsets, base = [], [], 0
        for entry in index["shards"]:
            path = directory / entry["tokens"]
            expected = entry["num_tokens"] * TOKEN_DTYPE.itemsize
            if not path.exists() or path.stat().st_size != expected:
                raise DataFormatError(path, None, f"shard is missing or not {expected} bytes")
            shards.append(
                np.memmap(path, dtype=TOKEN_DTYPE, mode="r")
                if entry["num_tokens"]
                else np.zeros(0, TOKEN_DTYPE)
            )
            offsets.append(np.load(directory / entry["offsets"])[:-1] + base)
            base += entry["num_tokens"]
        starts = np.cumsum([0] + [e["num_tokens"] for e in index["shards"]]).astype(np.int64)
        line_offsets = np.concatenate(offsets + [np.array([base], dtype=np.int64)]).astype(np.int64)
        return cls(directory, index, shards, starts, line_offsets)

    @property
    def num_tokens(self) -> int:
        return int(self.shard_starts[-1])

    @property
    def num_lines(self) -> int:
        return len(self.line_offsets) - 1

    def take(self, positions: np.ndarray) -> np.ndarray:
        """Ids at global stream positions (any shape), read from the memory maps."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(self.shards) == 1:
            return np.asarray(self.shards[0][positions], dtype=np.int32)
        shard = np.searchsorted(self.shard_starts, positions, side="right") - 1
        out = np.empty(positions.shape, dtype=np.int32)
        for s in np.unique(shard):
            sel = shard == s
            out[sel] = self.shards[s][positions[sel] - self.shard_starts[s]]
        return out

    def stream(self) -> np.ndarray:
        """The whole concatenated stream in memory (for tests and small corpora)."""
        return (
            np.concatenate([np.asarray(s, dtype=np.int32) for s in self.shards])
            if self.shards
            else np.zeros(0, np.int32)
        )

    def line(self, i: int) -> np.ndarray:
        """Line `i` as `<s> ids </s>`."""
        return self.take(np.arange(self.line_offsets[i], self.line_offsets[i + 1]))


def _chunks(lines: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for line in lines:
        if line.strip():
            chunk.append(line)
            if len(chunk) == size:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


class _ShardWriter:
    """Appends framed lines to numbered shard files, starting a new file past `max_tokens`."""

    def __init__(self, directory: pathlib.Path, max_tokens: int):
        self.directory, self.max_tokens = directory, max_tokens
        self.entries: list[dict[str, Any]] = []
        self._file = None
        self._offsets: list[np.ndarray] = []
        self._count = 0

    def _open_next(self) -> None:
        self._close_current()
        k = len(self.entries)
        self.entries.append({"tokens": f"tokens-{k:05d}.bin", "offsets": f"offsets-{k:05d}.npy"})
        self._file = open(self.directory / self.entries[-1]["tokens"], "wb")  # noqa: SIM115
        self._offsets, self._count = [], 0

    def _close_current(self) -> None:
        if self._file is None:
            return
        self._file.close()
        offsets = np.concatenate(self._offsets + [np.array([self._count], dtype=np.int64)])
        np.save(self.directory / self.entries[-1]["offsets"], offsets)
        self.entries[-1].update(num_tokens=int(self._count), num_lines=len(offsets) - 1)
        self._file = None

    def write(self, flat: np.ndarray, lengths: np.ndarray) -> None:
        """Append whole lines; a shard is closed before the line that would take it past `max_tokens`."""
        ends = np.cumsum(lengths)
        done = 0  # lines written so far
        while done < len(lengths):
            if self._file is None or self._count >= self.max_tokens:
                self._open_next()
            base = ends[done - 1] if done else 0
            fit = int(np.searchsorted(ends, base + self.max_tokens - self._count, side="right"))
            take = max(fit, done + 1) if self._count == 0 else fit  # a line longer than a shard gets one
            if take == done:
                self._open_next()
                continue
            starts = np.concatenate([[base], ends[done : take - 1]]).astype(np.int64)
            self._offsets.append(starts - base + self._count)
            self._file.write(flat[base : ends[take - 1]].astype(TOKEN_DTYPE, copy=False).tobytes())
            self._count += int(ends[take - 1] - base)
            done = take

    def close(self) -> list[dict[str, Any]]:
        if self._file is None and not self.entries:
            self._open_next()
        self._close_current()
        return self.entries


def _write_corpus(
    lines: Iterable[str], tokenizer: BatchEncoder, directory: pathlib.Path, max_shard_tokens: int
) -> tuple[list[dict[str, Any]], int, int]:
    writer = _ShardWriter(directory, max_shard_tokens)
    num_lines = num_tokens = 0
    for chunk in _chunks(lines, LINES_PER_CHUNK):
        flat, lengths = frame_lines(tokenizer.encode_batch(chunk))
        writer.write(flat, lengths)
        num_lines += len(chunk)
        num_tokens += len(flat)
    return writer.close(), num_lines, num_tokens


def ensure_shards(
    lines: Iterable[str],
    tokenizer: BatchEncoder,
    cache_dir: str | os.PathLike | None = None,
    *,
    content_hash: str | None = None,
    tokenizer_fp: str | None = None,
    name: str = "",
    max_shard_tokens: int = DEFAULT_SHARD_TOKENS,
) -> ShardedCorpus:
    """Tokenized shards of `lines` (blank lines skipped), built on the first call and reused after.

    `content_hash` identifies the text; when omitted the lines are hashed here (they are then read twice,
    so pass a list, or use `ensure_file_shards` for files).
    """
    if content_hash is None:
        lines = lines if isinstance(lines, Sequence) else list(lines)
        content_hash = hash_lines(lines)
    tokenizer_fp = tokenizer_fp or tokenizer_fingerprint(tokenizer)
    key = hashlib.sha256(f"{FORMAT_VERSION}:{content_hash}:{tokenizer_fp}".encode()).hexdigest()[:32]
    cache_dir = pathlib.Path(cache_dir) if cache_dir is not None else default_cache_dir()
    final = cache_dir / key
    if (final / "index.json").exists():
        return ShardedCorpus.open(final)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=cache_dir))
    try:
        entries, num_lines, num_tokens = _write_corpus(lines, tokenizer, tmp, max_shard_tokens)
        index = {
            "format": FORMAT_VERSION,
            "key": key,
            "name": name,
            "content_hash": content_hash,
            "tokenizer": tokenizer_fp,
            "base_size": int(tokenizer.base_size),
            "num_lines": num_lines,
            "num_tokens": num_tokens,
            "shards": entries,
        }
        (tmp / "index.json").write_text(json.dumps(index, indent=1))
        try:
            os.replace(tmp, final)  # atomic publish; a concurrent builder may have won the race
        except OSError:
            if not (final / "index.json").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ShardedCorpus.open(final)


def read_corpus_lines(paths: Sequence[str | os.PathLike]) -> Iterator[str]:
    """Lines of text (or .gz) files in order, with file/line errors from `open_lines`."""
    for path in paths:
        for _, line in open_lines(path):
            yield line


def ensure_file_shards(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    tokenizer: BatchEncoder,
    cache_dir: str | os.PathLike | None = None,
    **kwargs: Any,
) -> ShardedCorpus:
    """`ensure_shards` for one-paragraph-per-line text files; the cache key hashes the file bytes."""
    paths = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    return ensure_shards(
        read_corpus_lines(paths),
        tokenizer,
        cache_dir,
        content_hash=hash_files(paths),
        name=kwargs.pop("name", os.fspath(paths[0])),
        **kwargs,
    )
