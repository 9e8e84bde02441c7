r"""A local Hugging Face checkpoint as an xlt_jax pretraining run, so fine-tuning and evaluation take it as is.

    python -m xlt_jax.finetune --config configs/finetune/pos.py:pretrained=hf:/path/to/hf_dir --workdir runs/pos
    python -m xlt_jax.interop.hf_import /path/to/hf_dir --out runs/imported     # an explicit run directory

`pretrained=hf:DIR` is resolved by `finetuning.pretrained.load_pretrained`: the checkpoint is converted once
into `$XLT_CACHE_DIR/hf_import/<name>-<content hash>/` (default `~/.cache/xlt_jax/...`), a directory with the
layout of a pretraining WORKDIR (`config.json`, `tokenizer/`, `checkpoints/0/state` holding the parameters).

The tokenizer must be xlt_jax's (fixed special ids 0-4): `DIR/xlt_jax_tokenizer/` (what `xlt_jax.export`
writes), else a SentencePiece model `DIR/spm.model`; a foreign tokenizer (e.g. XLM-R's, whose `<mask>` is the
last id) is refused with the reason. `DIR/xlt_jax.json`, written by the export, restores the vocabulary
layout (transliterated copies, T5 sentinels) and the model settings exactly; without it they are inferred.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pathlib
import shutil
import sys
from typing import Any

from xlt_jax.data.tokenizer import Tokenizer
from xlt_jax.errors import ConfigError, DataFormatError
from xlt_jax.interop import hf_checkpoint
from xlt_jax.interop.hf_tokenizer import XLT_TOKENIZER_DIR

PREFIX = "hf:"  # = finetuning.pretrained.HF_PREFIX
INFO_FILE = "xlt_jax.json"  # written next to an exported HF checkpoint: layout and model block
SPM_FILES = ("spm.model",)
CACHE_SUBDIR = "hf_import"


def find_tokenizer(directory: pathlib.Path) -> Tokenizer:
    """xlt_jax's tokenizer stored with an HF checkpoint; errors say what is missing or foreign."""
    candidates = [directory / XLT_TOKENIZER_DIR, *(directory / name for name in SPM_FILES)]
    for path in candidates:
        if path.exists():
            try:
                return Tokenizer.load(path)
            except DataFormatError as e:
                raise ConfigError(f"{path}: not usable as xlt_jax's tokenizer ({e})") from e
    raise ConfigError(
        f"{directory}: no xlt_jax tokenizer ({XLT_TOKENIZER_DIR}/ or {', '.join(SPM_FILES)}); xlt_jax needs a "
        "SentencePiece model with its special ids 0-4 = <s> <pad> </s> <unk> <mask>"
    )


def run_config(hf_dir: pathlib.Path, model: Any, vocab_size: int, tokenizer: Tokenizer) -> dict:
    """The run config of the imported model: its model block, the data facts loading needs, the source."""
    info_path = hf_dir / INFO_FILE
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    model = model.to_dict()
    for key in ("dtype", "num_langs", "z_loss", "preset"):  # settings config.json does not carry
        if key in info.get("model", {}) and key in model:
            model[key] = info["model"][key]
    layout = info.get("layout", {})
    if model["name"] == "t5":
        sentinels = int(layout.get("num_sentinels", tokenizer.num_sentinels or vocab_size % tokenizer.base_size))
    else:
        sentinels = 0
    data = {
        "objective": "span" if model["name"] == "t5" else "mlm",
        "num_sentinels": sentinels,
        "langs": "+".join(tokenizer.languages),
        "transform": info.get("data", {}).get("transform", "none"),
    }
    return {"model": model, "data": data, "source": {"hf": os.fspath(hf_dir.resolve())}}


def materialize(hf_dir: str | os.PathLike, out: str | os.PathLike) -> pathlib.Path:
    """Write the pretraining-run directory `out` for the HF checkpoint `hf_dir` (atomically: temp + rename)."""
    from xlt_jax.training import checkpointing, loop

    hf_dir, out = pathlib.Path(hf_dir), pathlib.Path(out)
    model, params, vocab_size = hf_checkpoint.load_hf_checkpoint(hf_dir)
    tokenizer = find_tokenizer(hf_dir)
    config = run_config(hf_dir, model, vocab_size, tokenizer)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        (tmp / loop.CONFIG_FILE).write_text(json.dumps(config, indent=1, sort_keys=True))
        tokenizer.save(tmp / loop.TOKENIZER_DIR)
        checkpointing.save_params(tmp / loop.CHECKPOINT_DIR / "0" / "state", params)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _fingerprint(hf_dir: pathlib.Path) -> str:
    """Hash of config.json, the weights and the tokenizer: a changed checkpoint gets a new cache entry."""
    digest = hashlib.sha256()
    files = sorted(p for p in hf_dir.rglob("*") if p.is_file() and not p.name.startswith("."))
    for path in files:
        digest.update(os.fspath(path.relative_to(hf_dir)).encode())
        with path.open("rb") as f:
            for chunk in iter(lambda f=f: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def cache_root() -> pathlib.Path:
    root = os.environ.get("XLT_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "xlt_jax")
    return pathlib.Path(root) / CACHE_SUBDIR


def resolve(spec: str) -> pathlib.Path:
    """The pretraining-run directory for `hf:DIR`, converted on first use and cached by content."""
    hf_dir = pathlib.Path(spec.removeprefix(PREFIX)).expanduser()
    if not (hf_dir / hf_checkpoint.CONFIG_FILE).is_file():
        raise ConfigError(f"pretrained={spec!r}: {hf_dir} is not a Hugging Face checkpoint directory (no config.json)")
    out = cache_root() / f"{hf_dir.resolve().name}-{_fingerprint(hf_dir)}"
    if not out.is_dir():
        try:
            materialize(hf_dir, out)
        except OSError:
            if not out.is_dir():  # else another process converted it first
                raise
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xlt_jax.interop.hf_import", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("hf_dir", help="local Hugging Face checkpoint directory")
    parser.add_argument("--out", required=True, help="new xlt_jax pretraining-run directory")
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    try:
        if out.exists() and any(out.iterdir()):
            raise ConfigError(f"--out {out} exists and is not empty")
        if out.exists():
            out.rmdir()
        print(materialize(args.hf_dir, out))
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
