"""Fill the data directory with the datasets of `shared/data`, every file verified against `manifest.json`.

Sources, in order: `XLT_DATA_MIRROR=DIR` (copy from a local mirror), `XLT_DATA_MIRROR=http(s)://...` (an HTTP
mirror with the same layout), otherwise the public GitHub snapshots named in the manifest, re-packaged by each
file's recipe (gzip, zip/tar member, concatenation of listed files, one column). A file is written to a
temporary file next to its target, verified by sha256 and only then renamed into place, so an interrupted or
failed run never leaves a half-written dataset file behind.

    python -m xlt_jax.data.download [--datasets ud,xquad,...] [--data-dir DIR] [--source DIR|URL|public]
    python -m xlt_jax.data.download --list
    python -m xlt_jax.data.download --write-manifest --source /path/to/shared/data
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import dataclasses
import gzip
import hashlib
import http.client
import io
import json
import os
import pathlib
import re
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, BinaryIO, NamedTuple

from xlt_jax.data import paths
from xlt_jax.data.manifest_check import (
    CHECKSUMS,
    COLUMN,
    CONCAT,
    GZIP,
    MIRROR_ONLY,
    TAR_MEMBER,
    ZIP_MEMBER,
    parse_manifest,
)
from xlt_jax.errors import ConfigError, DownloadError

MANIFEST_PATH = pathlib.Path(__file__).with_name("manifest.json")
MANIFEST_FORMAT = 1
CHECKSUMS_FILE = "checksums.sha256"
RAW_URL = "https://raw.githubusercontent.com/{repo}/{commit}/{path}"
USER_AGENT = "xlt_jax-download/1"
CHUNK = 1 << 20
RETRY_HTTP_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


GROUPS: dict[str, str] = {
    "ud": "Universal Dependencies treebanks (CoNLL-U) and XTREME UD-POS files",
    "xquad": "XQuAD (12 languages)",
    "squad": "SQuAD v1.1 dev",
    "tatoeba": "LASER Tatoeba test set v1 (112 languages x eng)",
    "xnli": "XNLI dev/test (XTREME), German test labels (XGLUE), SICK",
    "wikiann": "WikiANN / PAN-X NER (en, fr, hi, ar)",
    "dictionaries": "MUSE full bilingual dictionaries (en<->fr/hi/ar)",
    "raw": "Leipzig monolingual sentence samples (1,000 per language)",
    "meta": "MANIFEST.md and checksums.sha256 of shared/data",
}


class _Dataset(NamedTuple):
    title: str
    repo: str | None
    commit: str | None
    license: str


# Transcribed from shared/data/MANIFEST.md (source repository @ commit of every dataset).
_TOPRO = ("boleima/ToPro", "9300fd37ea92650f528e027da0f427baae3a62a9")
_CS475 = ("shamsow/cs475", "ea1673d32f80dd94f8a84dda1fc539458a4ff3fa")
_DATASETS: dict[str, _Dataset] = {
    "ud/en_ewt": _Dataset("UD English-EWT", "UniversalDependencies/UD_English-EWT",
                          "15d613d8447b3478787d4c278730a1e48a945efb", "CC BY-SA 4.0"),
    "ud/fr_gsd": _Dataset("UD French-GSD (dev/test only)", "UniversalDependencies/UD_French-GSD",
                          "830e2782304af08b3cc1c9250475343e04274d81", "CC BY-SA 4.0"),
    "ud/fr_sequoia": _Dataset("UD French-Sequoia", "UniversalDependencies/UD_French-Sequoia",
                              "f5b049600c89d2cf15ebbec860f75d703884d32b", "LGPL-LR"),
    "ud/fr_partut": _Dataset("UD French-ParTUT", "UniversalDependencies/UD_French-ParTUT",
                             "4d0c8351842f93be11b50fd08ea7b2b4b9101c01", "CC BY-NC-SA 4.0"),
    "ud/en_pud": _Dataset("UD English-PUD", "UniversalDependencies/UD_English-PUD",
                          "f16eba4ae7f3d161870ed320676c5088b8fa476c", "CC BY-SA 3.0"),
    "ud/fr_pud": _Dataset("UD French-PUD", "UniversalDependencies/UD_French-PUD",
                          "c245786cfb3020d43bcfc96215ae531a1b07bcbc", "CC BY-SA 3.0"),
    "ud/hi_pud": _Dataset("UD Hindi-PUD", "UniversalDependencies/UD_Hindi-PUD",
                          "8bc630f73e0737ce5ed9eaa97abf11f172ecc9bd", "CC BY-SA 3.0"),
    "ud/ar_pud": _Dataset("UD Arabic-PUD", "UniversalDependencies/UD_Arabic-PUD",
                          "be733f45d21f42d506c62930f806ed2182a5ee3d", "CC BY-SA 3.0"),
    "ud/xtreme_udpos": _Dataset("XTREME UD-POS token/tag files (UD v2.5)", *_TOPRO,
                                "not stated (underlying UD treebank licenses)"),
    "xquad": _Dataset("XQuAD", "google-deepmind/xquad", "7d30520c717524000f0d9d2f9c10a069acd9d285",
                      "CC BY-SA 4.0"),
    "squad": _Dataset("SQuAD v1.1 dev", "pulakdas1999/QnA_using_BERT",
                      "48925669ea5ebb270348b817d7463b809a381bb9", "not stated (SQuAD: CC BY-SA 4.0)"),
    "tatoeba": _Dataset("LASER Tatoeba test set v1", "facebookresearch/LASER",
                        "74bc6ae7ffb7cba670fe0f428d0ede9f666fb821", "Tatoeba terms of use"),
    "xnli/xtreme": _Dataset("XNLI dev/test as preprocessed by XTREME", "wuhjie/few_shots_that_matters_wu",
                            "6bfe6324e428ec21a777b5543cd8e50ec82dcb3c", "not stated (XNLI: CC BY-NC 4.0)"),
    "xnli/xglue_de": _Dataset("German XNLI test with labels (XGLUE)", "LSX-UniWue/SuperGLEBer",
                              "5d3c59a91ab3b5011a45a28cfafe813cf657111d", "not stated"),
    "xnli/english_nli": _Dataset("SICK (English NLI; MultiNLI missing)", "kkalouli/SICK-processing",
                                 "0848f4aec60870122a4ca18de08ba0e25f6f9a75",
                                 "not stated (SICK: CC BY-NC-SA 3.0)"),
    "wikiann/en": _Dataset("WikiANN en (Rahimi splits)", *_CS475, "not stated"),
    "wikiann/hi": _Dataset("WikiANN hi (Rahimi splits)", *_CS475, "not stated"),
    "wikiann/ar": _Dataset("WikiANN ar (Rahimi splits)", *_CS475, "not stated"),
    "wikiann/fr": _Dataset("WikiANN fr (XTREME preprocessed; test without tags)", *_TOPRO, "not stated"),
    "dictionaries/muse_full": _Dataset("MUSE full dictionaries (hunalign format)",
                                       "coezbek/hunalign-dict-muse",
                                       "0950a115b315cab94a16b65c4e80df630c7058b3", "CC BY-NC 4.0"),
    "raw/lingua_leipzig_sample": _Dataset("Leipzig sentence samples (lingua test data)",
                                          "pemistahl/lingua-py",
                                          "754ce21122c083a7200763015fdaf7cda8d85453", "not stated"),
    "meta": _Dataset("manifest and checksums of shared/data", None, None, ""),
}


class _Rule(NamedTuple):
    """Stored path (regex) -> dataset, source path in the dataset's repo, recipe; templates use the groups."""

    pattern: str
    dataset: str
    source: str | None
    recipe: str
    member: str | None = None


_RULES: tuple[_Rule, ...] = (
    _Rule(r"ud/en_ewt/(dev|test)\.conllu\.gz", "ud/en_ewt", "en_ewt-ud-{0}.conllu", GZIP),
    # The released train file is >4 MiB and absent from the snapshot; its 540 source documents, concatenated
    # in the order of files.train, give the released file byte for byte (MANIFEST.md).
    _Rule(r"ud/en_ewt/train\.conllu\.gz", "ud/en_ewt", "not-to-release/file-lists/files.train", CONCAT),
    _Rule(r"ud/fr_gsd/(dev|test)\.conllu\.gz", "ud/fr_gsd", "fr_gsd-ud-{0}.conllu", GZIP),
    _Rule(r"ud/fr_sequoia/(train|dev|test)\.conllu\.gz", "ud/fr_sequoia", "fr_sequoia-ud-{0}.conllu", GZIP),
    _Rule(r"ud/fr_partut/(train|dev|test)\.conllu\.gz", "ud/fr_partut", "fr_partut-ud-{0}.conllu", GZIP),
    _Rule(r"ud/(en|fr|hi|ar)_pud/test\.conllu\.gz", "ud/{0}_pud", "{0}_pud-ud-test.conllu", GZIP),
    _Rule(r"ud/xtreme_udpos/((?:train|dev|test)-\w+)\.tsv\.gz", "ud/xtreme_udpos", "download/udpos/{0}.tsv",
          GZIP),
    _Rule(r"xquad/xquad\.(\w+)\.json\.gz", "xquad", "xquad.{0}.json", GZIP),
    _Rule(r"squad/dev-v1\.1\.json\.gz", "squad", "dev-v1.1.json.zip", ZIP_MEMBER, "dev-v1.1.json"),
    _Rule(r"tatoeba/(tatoeba\.\w+-eng\.\w+)\.gz", "tatoeba", "data/tatoeba/v1/{0}", GZIP),
    _Rule(r"xnli/((?:dev|test)-\w+\.tsv)\.gz", "xnli/xtreme", "data/xnli/{0}", GZIP),
    _Rule(r"xnli/xglue_de_test_labeled\.tsv\.gz", "xnli/xglue_de", "data/XGlue/NLI/test.txt", GZIP),
    _Rule(r"xnli/test_labels_from_xglue_de\.txt", "xnli/xglue_de", "data/XGlue/NLI/test.txt", COLUMN),
    _Rule(r"xnli/english_nli/SICK\.txt\.gz", "xnli/english_nli", "SICK.txt", GZIP),
    _Rule(r"wikiann/(en|hi|ar)/(train|dev|test)\.tsv\.gz", "wikiann/{0}", "download/panx_dataset/{0}.tar.gz",
          TAR_MEMBER, "{1}"),
    _Rule(r"wikiann/fr/(train|dev|test)\.tsv\.gz", "wikiann/fr", "download/panx/{0}-fr.tsv", GZIP),
    _Rule(r"dictionaries/muse_full/(\w+-\w+)\.dict\.gz", "dictionaries/muse_full", "dict/{0}.dict", GZIP),
    _Rule(r"raw/lingua_leipzig_sample/(\w+)\.sentences\.txt\.gz", "raw/lingua_leipzig_sample",
          "language-testdata/sentences/{0}.txt", GZIP),
    _Rule(r"MANIFEST\.md", "meta", None, MIRROR_ONLY),
    _Rule(re.escape(CHECKSUMS_FILE), "meta", None, CHECKSUMS),
)
_EWT_PARTS_DIR = "not-to-release/sources/"
_LABEL_COLUMN = 3  # XGLUE test.txt: premise, hypothesis, label


# ----------------------------------------------------------------------------------------------- manifest


def _sha256_file(path: pathlib.Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _gzip_content_digest(path: pathlib.Path) -> tuple[int, str]:
    """(size, sha256) of the uncompressed content of a gzip file, streamed."""
    sha, size = hashlib.sha256(), 0
    with gzip.open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()


def _source_of(rel: str) -> dict[str, Any]:
    """Dataset id and public source (URL, recipe, member/column) of a stored file, from `_RULES`."""
    hits = [(rule, m) for rule in _RULES if (m := re.fullmatch(rule.pattern, rel))]
    if len(hits) != 1:
        raise ConfigError(f"{rel}: {len(hits)} source rules match (need exactly one); update _RULES")
    rule, m = hits[0]
    dataset = rule.dataset.format(*m.groups())
    meta = _DATASETS[dataset]
    out: dict[str, Any] = {"dataset": dataset, "recipe": rule.recipe, "url": None}
    if rule.source is not None:
        out["url"] = RAW_URL.format(repo=meta.repo, commit=meta.commit, path=rule.source.format(*m.groups()))
    if rule.member is not None:
        out["member"] = rule.member.format(*m.groups())
    if rule.recipe == CONCAT:
        out["parts_url"] = RAW_URL.format(repo=meta.repo, commit=meta.commit, path=_EWT_PARTS_DIR)
    if rule.recipe == COLUMN:
        out["column"] = _LABEL_COLUMN
    return out


def checksums_text(manifest: Mapping[str, Any]) -> str:
    """`sha256sum` lines of every file but the checksum file itself, i.e. `shared/data/checksums.sha256`."""
    return "".join(f"{e.get('listed_sha256', e['sha256'])}  {e['path']}\n"
                   for e in manifest["files"] if e["path"] != CHECKSUMS_FILE)


def build_manifest(mirror_dir: str | os.PathLike) -> dict[str, Any]:
    """Manifest of a complete mirror: its `checksums.sha256` plus sizes, content hashes and public sources.

    Reproducible: `python -m xlt_jax.data.download --write-manifest --source DIR` regenerates the shipped
    file.
    """
    root = pathlib.Path(mirror_dir)
    listed = []
    for lineno, line in enumerate((root / CHECKSUMS_FILE).read_text("utf-8").splitlines(), start=1):
        digest, sep, rel = line.partition("  ")
        if not sep or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise ConfigError(f"{root / CHECKSUMS_FILE}:{lineno}: not a sha256sum line: {line!r}")
        listed.append((rel, digest))
    listed.append((CHECKSUMS_FILE, _sha256_file(root / CHECKSUMS_FILE)))
    files = []
    for rel, digest in listed:
        path = root / rel
        actual = _sha256_file(path)
        entry: dict[str, Any] = {"path": rel, "size": path.stat().st_size, "sha256": actual}
        if actual != digest:
            # shared/data's MANIFEST.md was edited after checksums.sha256 was written; tolerate that for
            # documentation only, keeping the stale line so checksums.sha256 itself is reproduced verbatim.
            if _source_of(rel)["recipe"] != MIRROR_ONLY:
                raise DownloadError(f"mirror {root}: {rel} has sha256 {actual}, "
                                    f"checksums.sha256 says {digest}")
            entry["listed_sha256"] = digest
        content = _gzip_content_digest(path) if rel.endswith(".gz") else (entry["size"], actual)
        entry |= {"content_size": content[0], "content_sha256": content[1]}
        files.append(entry | _source_of(rel))
    used = {e["dataset"] for e in files}
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "about": "Files of shared/data (see its MANIFEST.md): sha256/size as stored, content_sha256/"
                 "content_size uncompressed, public source URL and the recipe that turns it into the file. "
                 "Generated by `python -m xlt_jax.data.download --write-manifest --source MIRROR_DIR`.",
        "groups": GROUPS,
        "datasets": {
            name: {"title": d.title, "license": d.license,
                   "source": f"https://github.com/{d.repo}/tree/{d.commit}" if d.repo else None}
            for name, d in _DATASETS.items() if name in used
        },
        "files": files,
    }
    if checksums_text(manifest).encode() != (root / CHECKSUMS_FILE).read_bytes():
        raise ConfigError(f"{root / CHECKSUMS_FILE} is not in the canonical sorted sha256sum form")
    return manifest


def write_manifest(manifest: Mapping[str, Any], path: str | os.PathLike = MANIFEST_PATH) -> None:
    """Write the manifest as stable, diff-friendly JSON."""
    text = json.dumps(manifest, indent=1, ensure_ascii=False) + "\n"
    pathlib.Path(path).write_text(text, encoding="utf-8")


def load_manifest(path: str | os.PathLike = MANIFEST_PATH) -> dict[str, Any]:
    """The manifest shipped with the package (or another one, e.g. a test subset), validated on load."""
    return parse_manifest(pathlib.Path(path).read_bytes(), path, version=MANIFEST_FORMAT)


def valid_names(manifest: Mapping[str, Any]) -> list[str]:
    """Selectable names: groups, then dataset ids (a file path or directory prefix also works)."""
    order = {group: i for i, group in enumerate(GROUPS)}
    groups = sorted(dict.fromkeys(e["dataset"].split("/")[0] for e in manifest["files"]),
                    key=lambda g: order.get(g, len(order)))
    datasets = [d for d in dict.fromkeys(e["dataset"] for e in manifest["files"]) if d not in groups]
    return groups + datasets


def select_files(manifest: Mapping[str, Any], datasets: Iterable[str] | None = None,
                 files: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Manifest entries selected by group / dataset id / path prefix, optionally restricted to exact paths."""
    entries = list(manifest["files"])
    if datasets is not None:
        wanted: set[str] = set()
        for raw in datasets:
            name = raw.strip().strip("/")
            if not name:
                continue
            hits = {e["path"] for e in entries
                    if e["dataset"] == name or e["dataset"].startswith(name + "/")
                    or e["path"] == name or e["path"].startswith(name + "/")}
            if not hits:
                raise ConfigError(f"unknown dataset {raw!r}; valid names: {', '.join(valid_names(manifest))} "
                                  "(or a file path / directory of the data layout, e.g. ud/en_ewt)")
            wanted |= hits
        entries = [e for e in entries if e["path"] in wanted]
    if files is not None:
        only = set(files)
        unknown = only - {e["path"] for e in manifest["files"]}
        if unknown:
            raise ConfigError(f"files not in the manifest: {', '.join(sorted(unknown))}")
        entries = [e for e in entries if e["path"] in only]
    return entries


# ----------------------------------------------------------------------------------------------- sources


@dataclasses.dataclass(frozen=True)
class Source:
    """Where files come from: `local` mirror dir, `http` mirror base URL or `public` upstream sources."""

    kind: str
    location: str = ""

    def describe(self) -> str:
        return {"local": f"local mirror {self.location}", "http": f"HTTP mirror {self.location}",
                "public": "public sources"}[self.kind]


def resolve_source(value: str | os.PathLike | Source | None = None) -> Source:
    """`None` reads `$XLT_DATA_MIRROR`; a directory, an http(s) URL or "public" select the source."""
    if isinstance(value, Source):
        return value
    if value is None:
        value = os.environ.get(paths.MIRROR_ENV, "")
    text = os.fspath(value).strip()
    if not text or text == "public":
        return Source("public")
    if re.match(r"https?://", text):
        return Source("http", text.rstrip("/") + "/")
    root = pathlib.Path(text).expanduser().resolve()
    if not root.is_dir():
        raise DownloadError(f"mirror directory {root} does not exist (from {paths.MIRROR_ENV} or --source)")
    return Source("local", str(root))


class _Truncated(Exception):
    """The server closed the connection before Content-Length bytes arrived."""


class _HashingWriter:
    """File-like sink that hashes and counts what it writes; `reset()` rewinds it for a retry."""

    def __init__(self, out: BinaryIO):
        self.out = out
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.out.write(data)
        self.sha.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        self.out.flush()

    def reset(self) -> None:
        self.out.seek(0)
        self.out.truncate()
        self.sha = hashlib.sha256()
        self.size = 0


@dataclasses.dataclass
class _Fetcher:
    """HTTP GET with bounded retries, and a per-run cache for archives that several files share."""

    retries: int
    backoff: float
    timeout: float
    hint: str = ""  # appended to errors, e.g. "use a mirror" for public sources
    _cache: dict[str, bytes] = dataclasses.field(default_factory=dict)
    _locks: dict[str, threading.Lock] = dataclasses.field(default_factory=dict)
    _guard: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def get(self, url: str, sink: _HashingWriter, dataset: str) -> None:
        """Stream `url` into `sink`; retry interrupted transfers and 5xx, fail at once on 4xx."""
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            sink.reset()
            try:
                request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    expected = response.headers.get("Content-Length")
                    while chunk := response.read(CHUNK):
                        sink.write(chunk)
                # http.client returns short data silently when the peer closes early: check the length.
                if expected is not None and sink.size != int(expected):
                    raise _Truncated(f"connection closed after {sink.size} of {expected} bytes")
                return
            except urllib.error.HTTPError as e:
                if e.code not in RETRY_HTTP_STATUS:
                    raise DownloadError(f"{dataset}: HTTP {e.code} {e.reason} for {url}{self.hint}") from e
                last = e
            except (_Truncated, http.client.HTTPException, OSError) as e:  # URLError, resets, timeouts
                last = e
        raise DownloadError(f"{dataset}: download of {url} failed after {self.retries + 1} attempts: "
                            f"{last}{self.hint}")

    def get_bytes(self, url: str, dataset: str, *, cache: bool = False) -> bytes:
        """Whole response body; `cache=True` fetches a URL once per run (archives shared by several files)."""
        if not cache:
            buf = io.BytesIO()
            self.get(url, _HashingWriter(buf), dataset)
            return buf.getvalue()
        with self._guard:
            lock = self._locks.setdefault(url, threading.Lock())
        with lock:
            if url not in self._cache:
                self._cache[url] = self.get_bytes(url, dataset)
            return self._cache[url]


# ----------------------------------------------------------------------------------------------- recipes


def _member(names: Sequence[str], wanted: str, url: str, dataset: str) -> str:
    """The one archive member whose base name is `wanted` (archives may prefix members with `./` or a dir)."""
    hits = [n for n in names if n.rstrip("/").rsplit("/", 1)[-1] == wanted]
    if len(hits) != 1:
        raise DownloadError(f"{dataset}: {url} has {len(hits)} members named {wanted!r} (need exactly one)")
    return hits[0]


def _column(data: bytes, column: int) -> bytes:
    """1-based tab-separated column of every line, one per line."""
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()
    return b"".join(line.split(b"\t")[column - 1] + b"\n" for line in lines)


def _public_content(entry: Mapping[str, Any], fetcher: _Fetcher, manifest: Mapping[str, Any]) -> bytes:
    """Uncompressed content of a file, rebuilt from its public source by its recipe."""
    recipe, url, dataset = entry["recipe"], entry["url"], entry["dataset"]
    if recipe == GZIP:
        return fetcher.get_bytes(url, dataset)
    if recipe == ZIP_MEMBER:
        with zipfile.ZipFile(io.BytesIO(fetcher.get_bytes(url, dataset, cache=True))) as archive:
            return archive.read(_member(archive.namelist(), entry["member"], url, dataset))
    if recipe == TAR_MEMBER:
        with tarfile.open(fileobj=io.BytesIO(fetcher.get_bytes(url, dataset, cache=True))) as archive:
            members = [m for m in archive.getmembers() if m.isfile()]
            name = _member([m.name for m in members], entry["member"], url, dataset)
            return archive.extractfile(name).read()  # type: ignore[union-attr]
    if recipe == CONCAT:
        listing = [line.strip() for line in fetcher.get_bytes(url, dataset).decode("utf-8").splitlines()]
        part_urls = [entry["parts_url"] + urllib.parse.quote(name) for name in listing if name]
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return b"".join(pool.map(lambda u: fetcher.get_bytes(u, dataset), part_urls))
    if recipe == COLUMN:
        return _column(fetcher.get_bytes(url, dataset, cache=True), entry["column"])
    if recipe == CHECKSUMS:
        return checksums_text(manifest).encode()
    raise DownloadError(f"{dataset}: {entry['path']} has no public source ({recipe}); "
                        f"set {paths.MIRROR_ENV}=DIR or URL to copy it from a mirror")


def _write_gzip(content: bytes, sink: _HashingWriter) -> None:
    """Deterministic gzip (no name, mtime 0, level 9): the bytes shared/data was built with."""
    with gzip.GzipFile(fileobj=sink, mode="wb", compresslevel=9, mtime=0, filename="") as gz:  # type: ignore[arg-type]
        gz.write(content)


# ----------------------------------------------------------------------------------------------- download


@dataclasses.dataclass(frozen=True)
class FileResult:
    """One file's outcome: `fetched`, `present` (already verified) or `unavailable` (no public source)."""

    path: str
    dataset: str
    action: str
    size: int
    origin: str


@dataclasses.dataclass
class DownloadReport:
    """Outcome of `download`: one `FileResult` per selected file."""

    data_dir: pathlib.Path
    source: Source
    files: list[FileResult]
    seconds: float = 0.0

    def count(self, action: str) -> int:
        return sum(r.action == action for r in self.files)

    def group_line(self, group: str) -> str:
        rows = [r for r in self.files if r.dataset.split("/")[0] == group]
        verb = "copied" if self.source.kind == "local" else "downloaded"
        parts = [f"{sum(r.action == 'fetched' for r in rows)} {verb}",
                 f"{sum(r.action == 'present' for r in rows)} up to date"]
        missing = [r.path for r in rows if r.action == "unavailable"]
        if missing:
            parts.append(f"{len(missing)} only on a mirror ({', '.join(missing)})")
        mib = sum(r.size for r in rows if r.action != "unavailable") / 2**20
        return f"{group:<13}{len(rows):4d} files, {mib:6.1f} MiB: {', '.join(parts)}"


@dataclasses.dataclass
class _Run:
    source: Source
    data_dir: pathlib.Path
    manifest: Mapping[str, Any]
    fetcher: _Fetcher
    file_mode: int


def _is_current(entry: Mapping[str, Any], target: pathlib.Path) -> bool:
    """True if `target` holds the manifest's bytes, or (gzip rebuilt by another zlib) its exact content."""
    try:
        size = target.stat().st_size
    except FileNotFoundError:
        return False
    if size == entry["size"] and _sha256_file(target) == entry["sha256"]:
        return True
    if not entry["path"].endswith(".gz"):
        return False
    try:
        return _gzip_content_digest(target) == (entry["content_size"], entry["content_sha256"])
    except (OSError, EOFError, zlib.error):  # not gzip, truncated, bad CRC or deflate data
        return False


def _mismatch(entry: Mapping[str, Any], origin: str, what: str, expected: str, got: str) -> DownloadError:
    return DownloadError(f"{entry['dataset']}: checksum mismatch for {entry['path']} from {origin}: "
                         f"expected {what} {expected}, got {got}; nothing was written")


def _fill(entry: Mapping[str, Any], run: _Run, sink: _HashingWriter) -> str:
    """Write the stored bytes of `entry` into `sink`, verified; return where they came from."""
    dataset, rel = entry["dataset"], entry["path"]
    if run.source.kind == "local":
        origin = os.path.join(run.source.location, rel)
        try:
            with open(origin, "rb") as f:
                while chunk := f.read(CHUNK):
                    sink.write(chunk)
        except FileNotFoundError as e:
            raise DownloadError(f"{dataset}: {rel} is missing from the local mirror ({origin})") from e
    elif run.source.kind == "http":
        origin = run.source.location + urllib.parse.quote(rel)
        run.fetcher.get(origin, sink, dataset)
    else:
        origin = entry["url"] or entry["recipe"]
        content = _public_content(entry, run.fetcher, run.manifest)
        got = hashlib.sha256(content).hexdigest()
        if got != entry["content_sha256"]:
            raise _mismatch(entry, f"{origin} ({entry['recipe']})", "content sha256",
                            entry["content_sha256"], got)
        if rel.endswith(".gz"):
            _write_gzip(content, sink)
        else:
            sink.write(content)
        # Content is verified; a different zlib may compress to other bytes, which `_is_current` accepts.
        return origin
    got = sink.sha.hexdigest()
    if got != entry["sha256"]:
        raise _mismatch(entry, origin, "sha256", entry["sha256"], got)
    return origin


def _ensure(entry: Mapping[str, Any], run: _Run) -> FileResult:
    """Make `data_dir/path` hold the verified file: skip if current, else fetch to a temp file and rename."""
    target = run.data_dir / entry["path"]
    result = dict(path=entry["path"], dataset=entry["dataset"], size=entry["size"])
    if _is_current(entry, target):
        return FileResult(**result, action="present", origin=str(target))
    if run.source.kind == "public" and entry["recipe"] == MIRROR_ONLY:
        return FileResult(**result, action="unavailable", origin="")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "w+b") as out:
            origin = _fill(entry, run, _HashingWriter(out))
        os.chmod(tmp, run.file_mode)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return FileResult(**result, action="fetched", origin=origin)


def _file_mode() -> int:
    """0o666 minus the umask: mkstemp creates 0o600 files, unreadable for other users of a shared dir."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def download(
    datasets: Iterable[str] | None = None,
    data_dir: str | os.PathLike | None = None,
    source: str | os.PathLike | Source | None = None,
    *,
    manifest: Mapping[str, Any] | None = None,
    files: Iterable[str] | None = None,
    retries: int = 3,
    backoff: float = 0.5,
    timeout: float = 60.0,
    workers: int = 4,
    log: Callable[[str], None] | None = print,
) -> DownloadReport:
    """Fill `data_dir` (default `$XLT_DATA_DIR`) with the selected files, verified against the manifest.

    `datasets`: group names, dataset ids or path prefixes (None = everything); `source`: a mirror directory,
    an http(s) mirror URL, "public", or None for `$XLT_DATA_MIRROR`. Raises `DownloadError` naming dataset,
    file and URL on a failed or unverifiable fetch, `ConfigError` on an unknown dataset name.
    """
    start = time.perf_counter()
    manifest = load_manifest() if manifest is None else manifest
    order = {group: i for i, group in enumerate(GROUPS)}
    entries = sorted(select_files(manifest, datasets, files),
                     key=lambda e: order.get(e["dataset"].split("/")[0], len(order)))
    source = resolve_source(source)
    hint = f" (set {paths.MIRROR_ENV}=DIR or URL to use a mirror)" if source.kind == "public" else ""
    run = _Run(source=source, manifest=manifest, file_mode=_file_mode(),
               data_dir=pathlib.Path(data_dir).resolve() if data_dir is not None else paths.data_dir(),
               fetcher=_Fetcher(retries=retries, backoff=backoff, timeout=timeout, hint=hint))
    report = DownloadReport(data_dir=run.data_dir, source=run.source, files=[])
    groups: dict[str, list[concurrent.futures.Future[FileResult]]] = {}
    with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
        for entry in entries:
            groups.setdefault(entry["dataset"].split("/")[0], []).append(pool.submit(_ensure, entry, run))
        try:
            for group, futures in groups.items():
                report.files += [f.result() for f in futures]
                if log:
                    log(report.group_line(group))
        except BaseException:
            for futures in groups.values():
                for f in futures:
                    f.cancel()
            raise
    report.seconds = time.perf_counter() - start
    if log:
        log(f"{run.data_dir}: {len(report.files)} files from {run.source.describe()}: "
            f"{report.count('fetched')} fetched, {report.count('present')} up to date"
            + (f", {report.count('unavailable')} not available" if report.count("unavailable") else "")
            + f" ({report.seconds:.1f} s)")
    return report


# ----------------------------------------------------------------------------------------------- CLI


def _list(manifest: Mapping[str, Any]) -> None:
    by_dataset: dict[str, list[Mapping[str, Any]]] = {}
    order = {group: i for i, group in enumerate(GROUPS)}
    for e in sorted(manifest["files"], key=lambda e: order.get(e["dataset"].split("/")[0], len(order))):
        by_dataset.setdefault(e["dataset"], []).append(e)
    for name, rows in by_dataset.items():
        info = manifest["datasets"][name]
        mib = sum(r["size"] for r in rows) / 2**20
        print(f"{name:<27}{len(rows):4d} files {mib:6.1f} MiB  {info['source'] or MIRROR_ONLY}")
    print(f"groups: {', '.join(manifest['groups'])}")


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m xlt_jax.data.download",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=None,
                        help="comma-separated groups / dataset ids / paths (default: every data group; "
                             "'meta' (the mirror's MANIFEST.md, checksums) only when named); see --list")
    parser.add_argument("--data-dir", default=None,
                        help=f"target directory (default ${paths.DATA_DIR_ENV} or ./data)")
    parser.add_argument("--source", default=None,
                        help=f"mirror dir, http(s) mirror URL or 'public' (default: ${paths.MIRROR_ENV})")
    parser.add_argument("--retries", type=int, default=3, help="retries per HTTP transfer")
    parser.add_argument("--workers", type=int, default=4, help="parallel transfers")
    parser.add_argument("--list", action="store_true", help="list datasets and their sources, then exit")
    parser.add_argument("--write-manifest", action="store_true",
                        help="regenerate the package manifest from the mirror given by --source")
    parser.add_argument("--output", default=str(MANIFEST_PATH), help="where --write-manifest writes")
    args = parser.parse_args(argv)
    try:
        if args.write_manifest:
            source = resolve_source(args.source)
            if source.kind != "local":
                raise ConfigError("--write-manifest needs a complete local mirror: --source DIR")
            write_manifest(build_manifest(source.location), args.output)
            print(f"wrote {args.output}")
            return 0
        if args.list:
            _list(load_manifest())
            return 0
        # The mirror's documentation files change independently of the data; fetch them only on request.
        names = args.datasets.split(",") if args.datasets is not None else [g for g in GROUPS if g != "meta"]
        download(names, args.data_dir, args.source, retries=args.retries, workers=args.workers)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except DownloadError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
