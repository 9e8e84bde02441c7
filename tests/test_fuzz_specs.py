"""Config strings (`key=value,...` of every config file), transform specs and the data manifest, fuzzed.

Seeds are the strings the README and the config docstrings use, and the shipped `manifest.json`. A config
string must give a config or a `ConfigError` naming a key; a spec a `Transform` whose canonical name parses
back to itself, or a `TransformError` quoting the spec; the manifest a validated dict or an error naming the
file and the line or key.
"""

from __future__ import annotations

import functools
import json
import pathlib
import runpy
import tempfile

import numpy as np
import pytest
from fuzz_helpers import FIELD_TEXT, apply, json_mutation, mutations, profile, run_reader, time_limit
from hypothesis import given
from hypothesis import strategies as st

from xlt_jax.config_utils import parse_arg
from xlt_jax.data import download, transforms
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import ConfigError, XltError

pytestmark = pytest.mark.fuzz
FUZZ = profile()
CONFIGS = pathlib.Path(__file__).resolve().parents[1] / "configs"

# (config file, argument strings from the README and the config docstrings)
CONFIG_ARGS = [
    ("pretrain/bilingual.py", "lang=en,transform=translit+inv,smoke"),
    ("pretrain/bilingual.py", "lang=en,transform=inv,objective=span"),
    ("pretrain/monolingual.py", "lang=fr"),
    ("pretrain/multilingual.py", "langs=en+fr+hi+ar,alpha=0.3"),
    ("finetune/pos.py", "pretrained=runs/en_inv,train_transform=inv"),
    ("finetune/ner.py", "pretrained=PATH,max_len=128"),
    ("finetune/nli.py", "pretrained=runs/en_inv"),
    ("finetune/qa.py", "pretrained=runs/en_inv"),
    ("evaluate.py", "finetuned=runs/en_inv/pos,targets=en:none+en:inv,setting=BZ"),
    ("evaluate.py", "task=tatoeba,pretrained=runs/en_inv,targets=en:inv,setting=BZ"),
    ("experiments/deshpande.py", "lang=en,transform=translit+inv,tasks=pos+ner+nli+qa+tatoeba"),
    ("align.py", "pretrained=runs/en_translit"),
]
SPECS = ["none", "inv", "perm", "translit", "translit+inv", "translit+perm", "translit+syntax:hi", "perm@word",
         "inv@word", "syntax:fr[deterministic]", "translit[keep=0.25;seed=3;shift_special]"]
LAYOUT = VocabLayout(base_size=1000)


@functools.cache
def get_config(rel: str):
    return runpy.run_path(str(CONFIGS / rel))["get_config"]


@st.composite
def mutated_arg(draw: st.DrawFn, text: str) -> str:
    """Byte mutations, with items (`,`) as lines and `=` as the column separator, so that items and values are
    dropped, duplicated and replaced too."""
    data = text.encode().replace(b",", b"\n").replace(b"=", b"\t")
    data = apply(data, draw(mutations()))
    return data.replace(b"\n", b",").replace(b"\t", b"=").decode("utf-8", "replace")


def arg_keys(arg: str) -> list[str]:
    return [item.partition("=")[0].strip() for item in arg.split(",") if item]


def test_every_seed_string_is_valid():
    for rel, arg in CONFIG_ARGS:
        get_config(rel)(arg)
    assert [transforms.parse(spec, LAYOUT).name for spec in SPECS] == [
        "none", "inv", "perm", "translit", "translit+inv", "translit+perm", "translit+syntax:hi", "perm@word",
        "inv@word", "syntax:fr[deterministic]", "translit[keep=0.25;seed=3;shift_special]"]
    assert download.load_manifest()["format"] == download.MANIFEST_FORMAT


# ------------------------------------------------------------------------------------------- config strings


@FUZZ
@given(seed=st.sampled_from(CONFIG_ARGS), data=st.data())
def test_config_strings(seed, data):
    """`get_config(arg)`: a config whose given values have their default's type, or a ConfigError naming a key."""
    rel, text = seed
    arg = data.draw(mutated_arg(text))
    with time_limit():
        try:
            config = get_config(rel)(arg)
        except XltError as e:
            assert any(repr(k) in str(e) or f"{k}:" in str(e) for k in arg_keys(arg)), f"names no key: {e}"
            return
    assert config is not None


@FUZZ
@given(key=st.sampled_from(["name", "steps", "lr", "flag"]), raw=FIELD_TEXT | st.text(), bare=st.booleans())
def test_parse_arg_types(key, raw, bare):
    """A value that parses has its default's type (a finite float, a real bool); otherwise the key is named."""
    defaults = dict(name="en", steps=0, lr=0.0, flag=False)
    item = key if bare else f"{key}={raw}"
    try:
        parsed = parse_arg(item.replace(",", ";"), **defaults)
    except XltError as e:
        assert repr(key) in str(e), str(e)
        return
    assert type(parsed[key]) is type(defaults[key])
    assert not isinstance(parsed[key], float) or np.isfinite(parsed[key])


@pytest.mark.parametrize(("rel", "arg"), [
    ("pretrain/bilingual.py", "lang=en,transform=inv,objective"),  # fuzz case: was the string "true", ValueError
    ("pretrain/bilingual.py", "objective=t5"),  # ValueError from pretrain_config
    ("pretrain/bilingual.py", "lr=NAN"),  # fuzz case (test_parse_arg_types): lr was nan
    ("finetune/pos.py", "lr=inf"),
    ("evaluate.py", "task"),  # a bare string key was "true"
])
def test_config_strings_found_by_fuzzing(rel, arg):
    key = arg_keys(arg)[-1]
    with pytest.raises(ConfigError, match=rf"'{key}'|^{key}:"):
        get_config(rel)(arg)


# ------------------------------------------------------------------------------------------- transform specs


@FUZZ
@given(seed=st.sampled_from(SPECS), data=st.data())
def test_transform_specs(seed, data):
    spec = data.draw(mutated_arg(seed.replace("+", ",")))
    spec = spec.replace(",", "+")
    with time_limit():
        try:
            t = transforms.parse(spec, LAYOUT)
        except XltError as e:
            assert repr(spec.strip()) in str(e) or repr(spec) in str(e), f"does not quote the spec: {e}"
            return
        assert transforms.parse(t.name, LAYOUT).name == t.name
        ids = np.arange(24, dtype=np.int32).reshape(2, 12) + 5
        t.apply_ids(ids, seed=1, example_ids=np.arange(2))


# ------------------------------------------------------------------------------------------- data manifest


MANIFEST_KEYS = ("files[", "datasets", "groups", "format", "JSON")


@functools.cache
def manifest_slice() -> bytes:
    """The shipped manifest cut to its first 12 files (and the datasets they use), formatted as shipped."""
    manifest = json.loads(download.MANIFEST_PATH.read_text("utf-8"))
    manifest["files"] = manifest["files"][:12]
    used = {e["dataset"] for e in manifest["files"]}
    manifest["datasets"] = {k: v for k, v in manifest["datasets"].items() if k in used}
    return (json.dumps(manifest, indent=1, ensure_ascii=False) + "\n").encode()


def use_manifest(path: pathlib.Path) -> dict:
    """Load, then do what `download` and `--list` do with it without fetching anything."""
    manifest = download.load_manifest(path)
    download.valid_names(manifest)
    download.checksums_text(manifest)
    download.select_files(manifest, [manifest["files"][0]["path"]] if manifest["files"] else None)
    for entry in manifest["files"]:
        assert not pathlib.PurePosixPath(entry["path"]).is_absolute() and ".." not in entry["path"].split("/")
    return manifest


@FUZZ
@given(steps=mutations())
def test_manifest_bytes(steps):
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "manifest.json"
        path.write_bytes(apply(manifest_slice(), steps))
        run_reader(use_manifest, [path], line_required=False, key_words=MANIFEST_KEYS)


@FUZZ
@given(data=st.data())
def test_manifest_structure(data):
    _, manifest = data.draw(json_mutation(json.loads(manifest_slice())))
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "manifest.json"
        path.write_text(json.dumps(manifest))
        run_reader(use_manifest, [path], line_required=False, key_words=MANIFEST_KEYS)


def _manifest_error(tmp_path: pathlib.Path, data: bytes) -> str:
    path = tmp_path / "manifest.json"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        download.load_manifest(path)
    assert str(path) in str(info.value)
    return str(info.value).replace(str(path), "<manifest>")


@pytest.mark.parametrize(("damage", "expected"), [
    # fuzz cases of test_manifest_bytes / test_manifest_structure, which escaped as the exception named
    (lambda m: b"", "<manifest>:1: invalid JSON"),  # JSONDecodeError (truncate@0)
    (lambda m: bytes([m[0] ^ 128]) + m[1:], "<manifest>:1: manifest is not UTF-8"),  # UnicodeDecodeError (flip@0^128)
    (lambda m: m.replace(b'"sha256"', b'"sha257"', 1), "files[0].sha256: missing"),  # KeyError
    (lambda m: m.replace(b'"files": [', b'"files": null, "x": [', 1), "manifest.files: expected list"),  # TypeError
    (lambda m: m.replace(b'"dataset": "meta"', b'"dataset": null', 1), "files[0].dataset: expected str"),
    (lambda m: m.replace(b'"path": "MANIFEST.md"', b'"path": "../outside"', 1), "files[0].path: '../outside' is not"),
])
def test_manifest_damage_found_by_fuzzing(tmp_path, damage, expected):
    assert expected in _manifest_error(tmp_path, damage(manifest_slice()))
