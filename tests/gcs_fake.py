"""A fake Cloud Storage: every `gs://BUCKET/...` path is served from ROOT/BUCKET/... on local disk.

It goes through the libraries' own seams, so the code under test runs its `gs://` branches unchanged:
- `etils.epath.testing.mock_epath` for every epath call (ours and Orbax's: metadata, step directories,
  commit markers, deletion of old checkpoints), each path argument mapped to ROOT;
- Orbax's TensorStore kvstore spec for `gs://` (`gcs_utils.get_kvstore_for_gcs`), which would otherwise open
  TensorStore's GCS driver, mapped to the `file` driver under ROOT; and its hierarchical-namespace probe, which
  would ask the real GCS API, answered "no" (a flat bucket, the default).

As on GCS, writing an object needs no directory (the fake creates the parents). The local disk is laxer than
GCS elsewhere (rename is atomic, `flock` would work, a directory made by `mkdir` exists while empty): the code
must not rely on those for `gs://` paths, and the tests check the objects it leaves instead.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator
from unittest import mock

from etils.epath import testing as epath_testing
from orbax.checkpoint._src.path import gcs_utils

PREFIX = "gs://"


@contextlib.contextmanager
def fake_gcs(root: pathlib.Path) -> Iterator[pathlib.Path]:
    """Serve `gs://` from `root` inside the block; yields `root`."""
    root = pathlib.Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)

    def local(path):
        text = os.fspath(path)
        return os.path.join(root, text[len(PREFIX):]) if text.startswith(PREFIX) else text

    def remote(path: str) -> str:
        return PREFIX + os.path.relpath(path, root)

    def one(fn, path, *args, **kwargs):
        return fn(local(path), *args, **kwargs)

    def open_(fn, path, mode):
        if os.fspath(path).startswith(PREFIX) and mode[0] in "wa":  # no directories on GCS: any name is writable
            os.makedirs(os.path.dirname(local(path)), exist_ok=True)
        return fn(local(path), mode)

    def two(fn, path, dst, *args, **kwargs):
        return fn(local(path), local(dst), *args, **kwargs)

    def glob(fn, pattern):
        found = fn(local(pattern))
        return [remote(p) for p in found] if os.fspath(pattern).startswith(PREFIX) else found

    def walk(fn, top, **kwargs):
        for dirpath, dirs, files in fn(local(top), **kwargs):
            yield (remote(dirpath) if os.fspath(top).startswith(PREFIX) else dirpath), dirs, files

    def kvstore(path: str) -> dict:
        return {"driver": "file", "path": local(path)}  # as the gcs spec: bucket-relative path, unchanged

    mapped = {name: one for name in ("exists", "isdir", "listdir", "makedirs", "mkdir", "remove", "rmtree", "stat")}
    with (
        epath_testing.mock_epath(**mapped, open=open_, copy=two, rename=two, replace=two, glob=glob, walk=walk),
        mock.patch.object(gcs_utils, "get_kvstore_for_gcs", kvstore),
        mock.patch.object(gcs_utils, "is_hierarchical_namespace_enabled", lambda path: False),
    ):
        yield root
