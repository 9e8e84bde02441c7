"""Data download: a real HTTP server on 127.0.0.1 serving slices of the real mirror; a local mirror copy."""

from __future__ import annotations

import collections
import gzip
import hashlib
import http.server
import io
import pathlib
import shutil
import tarfile
import threading
import urllib.parse
import zipfile

import pytest

from xlt_jax.data import download as dl
from xlt_jax.data import paths
from xlt_jax.errors import ConfigError, DownloadError

RAW = [f"raw/lingua_leipzig_sample/{lang}.sentences.txt.gz" for lang in ("ar", "en", "fr", "hi")]
XQUAD_EN = "xquad/xquad.en.json.gz"
SLICE = [*RAW, XQUAD_EN]


class _Server(http.server.ThreadingHTTPServer):
    """Serves `root`; `faults[path]`: "corrupt" | "missing" | "truncate" | n (truncate the first n times)."""

    daemon_threads = True

    def __init__(self, root: pathlib.Path):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.faults: dict[str, str | int] = {}
        self.hits: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()
        self.url = f"http://127.0.0.1:{self.server_address[1]}/"


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        rel = urllib.parse.unquote(self.path.lstrip("/"))
        with self.server.lock:
            self.server.hits[rel] += 1
            hit = self.server.hits[rel]
        fault = self.server.faults.get(rel)
        path = self.server.root / rel
        if fault == "missing" or not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        if fault == "corrupt":
            data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
        truncate = fault == "truncate" or (isinstance(fault, int) and hit <= fault)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        # Announce the full length, then close after half: what a dropped connection looks like.
        self.wfile.write(data[: len(data) // 2] if truncate else data)
        self.close_connection = True

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def manifest() -> dict:
    return dl.load_manifest()


@pytest.fixture(scope="module")
def served(tmp_path_factory, data_dir):
    """Server root with `mirror/` (a real slice of the data layout) and `upstream/` (public-source fakes)."""
    root = tmp_path_factory.mktemp("www")
    for rel in SLICE:
        (root / "mirror" / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(data_dir / rel, root / "mirror" / rel)
    server = _Server(root)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def server(served):
    served.faults.clear()
    served.hits.clear()
    return served


def _subset(manifest: dict, paths: list[str]) -> dict:
    return {**manifest, "files": [e for e in manifest["files"] if e["path"] in paths]}


def _files_under(root: pathlib.Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _sha(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _get(data: pathlib.Path, source: str, manifest: dict, datasets=None, **kw) -> dl.DownloadReport:
    kw.setdefault("backoff", 0.01)
    return dl.download(datasets, data, source, manifest=manifest, log=None, **kw)


def test_http_mirror_download_verifies_and_lays_out(server, manifest, tmp_path):
    sub = _subset(manifest, SLICE)
    report = _get(tmp_path / "data", server.url + "mirror/", sub)
    assert _files_under(tmp_path / "data") == sorted(SLICE)  # no temp files, nothing else
    for entry in sub["files"]:
        assert _sha(tmp_path / "data" / entry["path"]) == entry["sha256"]
    assert report.count("fetched") == len(SLICE)
    assert {f"mirror/{rel}": 1 for rel in SLICE} == dict(server.hits)


def test_rerun_skips_present_files_and_replaces_wrong_ones(server, manifest, tmp_path):
    sub = _subset(manifest, SLICE)
    _get(tmp_path, server.url + "mirror/", sub)
    server.hits.clear()
    truncated, flipped = tmp_path / XQUAD_EN, tmp_path / RAW[0]
    truncated.write_bytes(truncated.read_bytes()[:-10])
    data = flipped.read_bytes()
    flipped.write_bytes(data[:500] + bytes([data[500] ^ 1]) + data[501:])  # same size, wrong bytes
    report = _get(tmp_path, server.url + "mirror/", sub)
    assert dict(server.hits) == {f"mirror/{XQUAD_EN}": 1, f"mirror/{RAW[0]}": 1}
    assert (report.count("present"), report.count("fetched")) == (len(SLICE) - 2, 2)
    for entry in sub["files"]:
        assert _sha(tmp_path / entry["path"]) == entry["sha256"]


def test_corrupted_file_raises_naming_file_and_url_and_leaves_nothing(server, manifest, tmp_path):
    server.faults[f"mirror/{XQUAD_EN}"] = "corrupt"
    with pytest.raises(DownloadError) as err:
        _get(tmp_path / "data", server.url + "mirror/", _subset(manifest, SLICE), ["xquad"])
    message = str(err.value)
    assert XQUAD_EN in message and f"{server.url}mirror/{XQUAD_EN}" in message and "checksum" in message
    assert server.hits[f"mirror/{XQUAD_EN}"] == 1  # a checksum error is not retried
    assert _files_under(tmp_path) == []  # neither the file nor a temp file


def test_404_names_dataset_and_url(server, manifest, tmp_path):
    rel = RAW[1]
    server.faults[f"mirror/{rel}"] = "missing"
    with pytest.raises(DownloadError) as err:
        _get(tmp_path, server.url + "mirror/", _subset(manifest, [rel]))
    message = str(err.value)
    assert "raw/lingua_leipzig_sample:" in message and "404" in message
    assert f"{server.url}mirror/{rel}" in message
    assert server.hits[f"mirror/{rel}"] == 1
    assert _files_under(tmp_path) == []


def test_interrupted_transfer_is_retried_until_the_server_recovers(server, manifest, tmp_path):
    server.faults[f"mirror/{XQUAD_EN}"] = 2  # two dropped connections, then a full response
    report = _get(tmp_path, server.url + "mirror/", _subset(manifest, [XQUAD_EN]), retries=3)
    assert server.hits[f"mirror/{XQUAD_EN}"] == 3
    assert report.count("fetched") == 1
    assert _sha(tmp_path / XQUAD_EN) == _subset(manifest, [XQUAD_EN])["files"][0]["sha256"]


def test_interrupted_transfer_fails_cleanly_after_bounded_retries(server, manifest, tmp_path):
    server.faults[f"mirror/{XQUAD_EN}"] = "truncate"
    with pytest.raises(DownloadError) as err:
        _get(tmp_path, server.url + "mirror/", _subset(manifest, [XQUAD_EN]), retries=2)
    assert "after 3 attempts" in str(err.value) and f"mirror/{XQUAD_EN}" in str(err.value)
    assert server.hits[f"mirror/{XQUAD_EN}"] == 3
    assert _files_under(tmp_path) == []


def test_local_mirror_copy_and_corrupt_mirror(served, manifest, tmp_path):
    sub = _subset(manifest, SLICE)
    report = _get(tmp_path / "data", str(served.root / "mirror"), sub)
    assert report.source.kind == "local" and report.count("fetched") == len(SLICE)
    for rel in SLICE:
        assert (tmp_path / "data" / rel).read_bytes() == (served.root / "mirror" / rel).read_bytes()
    bad = tmp_path / "bad_mirror"
    shutil.copytree(served.root / "mirror", bad)
    (bad / RAW[0]).write_bytes((bad / RAW[0]).read_bytes()[:-1])
    with pytest.raises(DownloadError, match="checksum mismatch for " + RAW[0]):
        _get(tmp_path / "fresh", str(bad), sub, ["raw"])
    assert RAW[0] not in _files_under(tmp_path / "fresh")
    assert not list((tmp_path / "fresh").rglob(".*.part"))


def test_dataset_selection_and_unknown_names(manifest, tmp_path):
    assert {e["path"] for e in dl.select_files(manifest, ["wikiann/hi"])} == {
        f"wikiann/hi/{split}.tsv.gz" for split in ("train", "dev", "test")}
    assert len(dl.select_files(manifest, ["ud"])) == 25
    assert [e["path"] for e in dl.select_files(manifest, [XQUAD_EN])] == [XQUAD_EN]
    with pytest.raises(ConfigError) as err:
        dl.select_files(manifest, ["xquad", "nope"])
    for name in ("'nope'", "ud", "xquad", "wikiann", "dictionaries", "raw", "ud/en_ewt"):
        assert name in str(err.value)


def test_cli_unknown_dataset_exits_with_valid_names(tmp_path, capsys):
    assert dl.main(["--datasets", "udx", "--data-dir", str(tmp_path), "--source", str(tmp_path)]) == 2
    assert "unknown dataset 'udx'" in capsys.readouterr().err
    assert _files_under(tmp_path) == []


def _upstream(served: _Server, data_dir: pathlib.Path) -> None:
    """Public-source stand-ins made from real files: plain text, a tar, a zip, documents to concatenate."""
    up = served.root / "upstream"
    up.mkdir(exist_ok=True)
    (up / "en.txt").write_bytes(gzip.decompress((data_dir / RAW[1]).read_bytes()))
    xglue = data_dir / "xnli/xglue_de_test_labeled.tsv.gz"
    (up / "test.txt").write_bytes(gzip.decompress(xglue.read_bytes()))
    with tarfile.open(up / "hi.tar.gz", "w:gz") as tar:
        for split in ("train", "dev", "test"):
            content = gzip.decompress((data_dir / f"wikiann/hi/{split}.tsv.gz").read_bytes())
            info = tarfile.TarInfo(f"./{split}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    with zipfile.ZipFile(up / "xquad.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("data/xquad.en.json", gzip.decompress((data_dir / XQUAD_EN).read_bytes()))
    # EWT dev cut into documents at sentence boundaries, as the EWT train recipe concatenates documents.
    sentences = gzip.decompress((data_dir / "ud/en_ewt/dev.conllu.gz").read_bytes()).split(b"\n\n")
    third = len(sentences) // 3
    docs = [sentences[:third], sentences[third:2 * third], sentences[2 * third:]]
    names = []
    for i, doc in enumerate(docs):
        names.append(f"genre/doc {i}.conllu")  # a space: part names must be URL-quoted
        (up / "parts" / "genre").mkdir(parents=True, exist_ok=True)
        tail = b"\n\n" if i < len(docs) - 1 else b""
        (up / "parts" / names[-1]).write_bytes(b"\n\n".join(doc) + tail)
    (up / "files.dev").write_text("\n".join(names) + "\n")


def test_public_recipes_rebuild_the_stored_bytes(served, manifest, data_dir, tmp_path):
    _upstream(served, data_dir)
    up = served.url + "upstream/"
    by_path = {e["path"]: e for e in manifest["files"]}
    files = [
        by_path[RAW[1]] | {"url": up + "en.txt"},
        by_path["xnli/xglue_de_test_labeled.tsv.gz"] | {"url": up + "test.txt"},
        by_path["xnli/test_labels_from_xglue_de.txt"] | {"url": up + "test.txt"},
        *(by_path[f"wikiann/hi/{s}.tsv.gz"] | {"url": up + "hi.tar.gz"} for s in ("train", "dev", "test")),
        by_path[XQUAD_EN] | {"url": up + "xquad.zip", "recipe": dl.ZIP_MEMBER, "member": "xquad.en.json"},
        by_path["ud/en_ewt/dev.conllu.gz"] | {"url": up + "files.dev", "recipe": dl.CONCAT,
                                              "parts_url": up + "parts/"},
    ]
    assert {e["recipe"] for e in files} == {dl.GZIP, dl.COLUMN, dl.TAR_MEMBER, dl.ZIP_MEMBER, dl.CONCAT}
    report = _get(tmp_path, "public", {**manifest, "files": files})
    assert report.count("fetched") == len(files)
    for entry in files:  # deterministic gzip reproduces the stored bytes, not only the content
        assert _sha(tmp_path / entry["path"]) == entry["sha256"], entry["path"]
    assert served.hits["upstream/hi.tar.gz"] == 1 and served.hits["upstream/test.txt"] == 2

    (served.root / "upstream" / "en.txt").write_bytes(b"not the sentences\n")
    (tmp_path / RAW[1]).unlink()
    with pytest.raises(DownloadError) as err:
        _get(tmp_path, "public", {**manifest, "files": files[:1]})
    assert all(s in str(err.value) for s in ("raw/lingua_leipzig_sample:", RAW[1], up + "en.txt", "content"))
    assert not (tmp_path / RAW[1]).exists()


def test_meta_from_public_sources(manifest, data_dir, tmp_path):
    report = _get(tmp_path, "public", manifest, ["meta"])
    assert (tmp_path / "checksums.sha256").read_text("utf-8") == dl.checksums_text(manifest)
    assert [r.path for r in report.files if r.action == "unavailable"] == ["MANIFEST.md"]
    assert _files_under(tmp_path) == ["checksums.sha256"]


def test_shipped_manifest_is_reproducible_from_the_mirror(manifest):
    mirror = paths.mirror_dir()
    if mirror is None:
        pytest.skip(f"rebuilding the manifest needs a complete local mirror (${paths.MIRROR_ENV})")
    # Only the data entries: the mirror's own MANIFEST.md may be edited at any time.
    data_entries = lambda m: [e for e in m["files"] if e["dataset"] != "meta"]  # noqa: E731
    assert data_entries(dl.build_manifest(mirror)) == data_entries(manifest)
    assert all(e["url"] and e["url"].startswith("https://raw.githubusercontent.com/")
               for e in manifest["files"] if e["dataset"] != "meta")
