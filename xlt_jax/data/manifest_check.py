"""Validation of the data manifest (`xlt_jax/data/manifest.json`) when it is loaded.

The downloader trusts every entry: it writes to `DATA_DIR/<path>`, compares hashes and sizes, and follows
the recipe. A damaged or hand-edited manifest must therefore fail on load with a `ConfigError` naming the
file and the line (invalid JSON) or the key (`files[3].sha256`), not as a KeyError mid-download, and a path
must never lead outside the data directory.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

from xlt_jax.errors import ConfigError

# Recipes: how the public source turns into the stored file.
GZIP = "gzip"
ZIP_MEMBER = "zip member then gzip"
TAR_MEMBER = "tar member then gzip"
CONCAT = "concatenate listed files then gzip"
COLUMN = "column of file"
CHECKSUMS = "checksums.sha256 of the manifest"
MIRROR_ONLY = "mirror only"
RECIPES = (GZIP, ZIP_MEMBER, TAR_MEMBER, CONCAT, COLUMN, CHECKSUMS, MIRROR_ONLY)
_NEEDS = {ZIP_MEMBER: "member", TAR_MEMBER: "member", COLUMN: "column", CONCAT: "parts_url"}  # field it reads
_NO_URL = (MIRROR_ONLY, CHECKSUMS)
_SHA256 = re.compile(r"[0-9a-f]{64}")


def parse_manifest(data: bytes, path: str | os.PathLike, *, version: int) -> dict:
    """The manifest in `data` (the bytes of `path`), checked; `ConfigError` names file and line or key."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ConfigError(f"{os.fspath(path)}:{line}: manifest is not UTF-8 ({e.reason})") from e
    try:
        manifest = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{os.fspath(path)}:{e.lineno}: invalid JSON at column {e.colno}: {e.msg}") from e
    except (ValueError, RecursionError) as e:  # a number beyond the digit limit, nesting beyond the stack
        raise ConfigError(f"{os.fspath(path)}: invalid JSON: {e}") from e
    _Checker(path).manifest(manifest, version)
    return manifest


class _Checker:
    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)

    def fail(self, where: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {where}: {message}")

    def field(self, obj: Mapping[str, Any], key: str, where: str, kinds: tuple[type, ...]) -> Any:
        if key not in obj:
            raise self.fail(f"{where}.{key}", "missing")
        value = obj[key]
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join("null" if k is type(None) else k.__name__ for k in kinds)
            raise self.fail(f"{where}.{key}", f"expected {names}, got {value!r}")
        return value

    def manifest(self, manifest: Any, version: int) -> None:
        if not isinstance(manifest, dict):
            raise self.fail("manifest", f"expected an object with format, groups, datasets, files; got {manifest!r}")
        if manifest.get("format") != version:
            raise self.fail("format", f"manifest format {manifest.get('format')!r}, expected {version}")
        groups = self.field(manifest, "groups", "manifest", (dict,))
        for name, description in groups.items():
            if not isinstance(description, str):
                raise self.fail(f"groups[{name!r}]", f"expected a description string, got {description!r}")
        datasets = self.field(manifest, "datasets", "manifest", (dict,))
        for name, info in datasets.items():
            where = f"datasets[{name!r}]"
            if not isinstance(info, dict):
                raise self.fail(where, f"expected an object, got {info!r}")
            self.field(info, "title", where, (str,))
            self.field(info, "license", where, (str,))
            self.field(info, "source", where, (str, type(None)))
        seen: set[str] = set()
        for i, entry in enumerate(self.field(manifest, "files", "manifest", (list,))):
            rel = self.entry(entry, f"files[{i}]", datasets)
            if rel in seen:
                raise self.fail(f"files[{i}].path", f"{rel!r} is listed twice")
            seen.add(rel)

    def entry(self, entry: Any, where: str, datasets: Mapping[str, Any]) -> str:
        if not isinstance(entry, dict):
            raise self.fail(where, f"expected an object, got {entry!r}")
        rel = self.field(entry, "path", where, (str,))
        parts = pathlib.PurePosixPath(rel).parts
        if not parts or rel.startswith("/") or "\\" in rel or any(p in (".", "..") for p in rel.split("/")):
            raise self.fail(f"{where}.path", f"{rel!r} is not a plain relative path inside the data directory")
        for key in ("size", "content_size"):
            if self.field(entry, key, where, (int,)) < 0:
                raise self.fail(f"{where}.{key}", "negative size")
        for key in ("sha256", "content_sha256", "listed_sha256"):
            if key == "listed_sha256" and key not in entry:  # optional: a stale line of checksums.sha256
                continue
            if not _SHA256.fullmatch(digest := self.field(entry, key, where, (str,))):
                raise self.fail(f"{where}.{key}", f"expected 64 lowercase hex digits, got {digest!r}")
        if self.field(entry, "dataset", where, (str,)) not in datasets:
            raise self.fail(f"{where}.dataset", f"{entry['dataset']!r} is not in datasets")
        recipe = self.field(entry, "recipe", where, (str,))
        if recipe not in RECIPES:
            raise self.fail(f"{where}.recipe", f"unknown recipe {recipe!r}; known: {', '.join(RECIPES)}")
        self.field(entry, "url", where, (type(None),) if recipe in _NO_URL else (str,))
        if recipe in _NEEDS:
            value = self.field(entry, _NEEDS[recipe], where, (int,) if recipe == COLUMN else (str,))
            if recipe == COLUMN and value < 1:
                raise self.fail(f"{where}.column", f"columns count from 1, got {value}")
        return rel
