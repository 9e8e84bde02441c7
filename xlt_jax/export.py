r"""Export a pretraining or fine-tuning run as a self-contained directory.

    python -m xlt_jax.export --workdir runs/en_inv --out exports/en_inv [--format orbax,hf] [--step N] [--overwrite]

    OUT/README.md                 model card: model, data, transform, steps, commit, evaluation rows
    OUT/export.json               what was exported: source run, kind, step, formats, head, HF class
    OUT/config.json               the run config as resolved by the run
    OUT/finetune.json             (fine-tuned runs) task, head, labels, vocabulary layout, training data
    OUT/tokenizer/                the SentencePiece tokenizer (spm.model + tokenizer.json)
    OUT/results.jsonl             the evaluation rows of the card
    OUT/checkpoints/STEP/state    (orbax) the parameters only, restorable without the original run
    OUT/hf/                       (hf) config.json, model.safetensors, tokenizer.json + tokenizer_config.json,
                                  xlt_jax.json (layout, model block), xlt_jax_tokenizer/

With the Orbax format the directory has the layout of the run itself, so `pretrained=OUT` (a pretraining
export) or `finetuned=OUT` (a fine-tuned export) works in any fine-tune or evaluation config. The Hugging
Face classes per model and head are listed in `xlt_jax.interop.hf_export`; a model without one is an error
before anything is written. Everything is written into a temporary sibling of OUT and renamed at the end;
an existing non-empty OUT is an error unless `--overwrite`. WORKDIR and OUT may be `gs://` URLs: a `gs://`
OUT gets the parameters from Orbax directly (which marks them complete there) and the other files from a local
temporary directory, `export.json` last (object storage has no directory rename, so a reader must take an OUT
without `export.json` as unfinished).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import shutil
import sys
import tempfile
from collections.abc import Sequence

import jax
import ml_collections
from etils import epath

from xlt_jax import model_card, results, storage
from xlt_jax.data.tokenizer import Tokenizer
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import ConfigError
from xlt_jax.finetuning import artifacts, pretrained

FORMATS = ("orbax", "hf")
EXPORT_FILE = "export.json"
HF_DIR = "hf"
PRETRAINED_HEAD = "pretrained"  # = interop.hf_export.PRETRAINED (not imported: it needs the hf extra)


@dataclasses.dataclass(frozen=True)
class Run:
    """What an export needs of a pretraining or fine-tuned run directory."""

    kind: str  # "pretraining" | "finetuned"
    workdir: epath.Path
    config: dict  # config.json
    info: artifacts.FinetuneInfo | None
    tokenizer: Tokenizer
    layout: VocabLayout
    step: int
    state_dir: epath.Path
    model_config: ml_collections.ConfigDict
    head: str  # PRETRAINED_HEAD or the task head kind

    @property
    def name(self) -> str:
        return self.workdir.name


def read_run(workdir: str | os.PathLike, step: int = 0) -> Run:
    """A fine-tuned run (it has finetune.json) or a pretraining run, at `step` (0 = the last checkpoint)."""
    if str(workdir).startswith(pretrained.HF_PREFIX):
        raise ConfigError(f"--workdir {workdir}: give a run directory (an hf: checkpoint is already exported)")
    workdir = storage.workdir_path(workdir)
    config_path = workdir / artifacts.CONFIG_FILE
    if (workdir / artifacts.INFO_FILE).is_file():
        run = artifacts.load_finetuned(workdir, step)
        info = run.info
        return Run("finetuned", workdir, json.loads(config_path.read_text()), info, run.tokenizer, info.vocab_layout,
                   run.step, run.state_dir, info.model_config, info.head["kind"])
    pre = pretrained.load_pretrained(workdir, step)
    return Run("pretraining", workdir, json.loads(config_path.read_text()), None, pre.tokenizer, pre.layout,
               pre.step, pre.state_dir, pre.model_config, PRETRAINED_HEAD)


def parse_formats(value: str | Sequence[str]) -> tuple[str, ...]:
    formats = tuple(f.strip() for f in (value.split(",") if isinstance(value, str) else value) if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if not formats or unknown:
        raise ConfigError(f"--format {value!r}: give a comma-separated subset of {', '.join(FORMATS)}")
    return formats


def check_out(out: epath.Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"--out {out} exists and is not empty; pass --overwrite to replace it")


def _write_hf(run: Run, directory: pathlib.Path, params: dict) -> None:
    from xlt_jax.interop import hf_export
    from xlt_jax.models import resolve_model_config

    spec = resolve_model_config(run.model_config, run.layout.size)
    hf_export.write(
        directory, params=params, spec=spec, head=run.head, tokenizer=run.tokenizer, layout=run.layout,
        model_config=run.model_config.to_dict(), label_names=run.info.label_names if run.info else (),
        data={"transform": run.info.train_transform if run.info else run.config.get("data", {}).get("transform")},
    )


def _write(run: Run, tmp: pathlib.Path, formats: tuple[str, ...], hf_class: str | None,
           params_root: epath.Path | None = None) -> None:
    """Every file of the export into `tmp`, the Orbax parameters into `params_root` (default `tmp`)."""
    from xlt_jax.models import resolve_model_config
    from xlt_jax.training import checkpointing

    params = pretrained.restore_all_params(run.state_dir)
    storage.copy_file(run.workdir / artifacts.CONFIG_FILE, tmp / artifacts.CONFIG_FILE)
    if run.kind == "finetuned":
        storage.copy_file(run.workdir / artifacts.INFO_FILE, tmp / artifacts.INFO_FILE)
    run.tokenizer.save(tmp / artifacts.TOKENIZER_DIR)
    if "orbax" in formats:
        root = tmp if params_root is None else params_root
        checkpointing.save_params(root / artifacts.CHECKPOINT_DIR / str(run.step) / pretrained.STATE_ITEM, params)
    if "hf" in formats:
        _write_hf(run, tmp / HF_DIR, jax.device_get(params))
    rows = model_card.evaluation_rows(run.workdir, finetuned=run.kind == "finetuned")
    results.append_rows(tmp, rows)
    commit = model_card.run_commit(run.workdir, rows)
    spec = resolve_model_config(run.model_config, run.layout.size)
    card = model_card.render(
        name=run.name, kind=run.kind, workdir=run.workdir, step=run.step, config=run.config,
        info=run.info.to_json() if run.info else None,
        model=dataclasses.asdict(spec),
        layout=artifacts.layout_dict(run.layout), rows=rows, commit=commit, formats=formats, hf_architecture=hf_class,
    )
    (tmp / "README.md").write_text(card)
    record = {"source": os.fspath(run.workdir), "kind": run.kind, "step": run.step, "formats": list(formats),
              "head": run.head, "hf_architecture": hf_class, "commit": commit, "exported_by": results.code_commit(),
              "time": results.utc_now(), "evaluation_rows": len(rows)}
    (tmp / EXPORT_FILE).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def _replace(tmp: pathlib.Path, out: pathlib.Path) -> None:
    """Move the finished export into place; an old OUT is moved aside first and deleted afterwards."""
    old = out.with_name(f".{out.name}.old-{os.getpid()}") if out.exists() else None
    if old is not None:
        os.replace(out, old)
    try:
        os.replace(tmp, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _upload(run: Run, out: epath.Path, formats: tuple[str, ...], hf_class: str | None) -> None:
    """Clear OUT (`check_out` allowed it), write the parameters there and the rest locally, then copy that up
    with export.json last."""
    if out.exists():
        out.rmtree()
    with tempfile.TemporaryDirectory(prefix="xlt-export-") as local:
        _write(run, pathlib.Path(local), formats, hf_class, params_root=out)
        storage.upload_tree(pathlib.Path(local), out, last=EXPORT_FILE)


def export(
    workdir: str | os.PathLike, out: str | os.PathLike, *, formats: str | Sequence[str] = ("orbax",),
    overwrite: bool = False, step: int = 0,
) -> epath.Path:
    """Export the run at `workdir` into `out` (see the module docstring); returns `out`."""
    formats, out = parse_formats(formats), storage.workdir_path(out)
    check_out(out, overwrite)
    run = read_run(workdir, step)
    hf_class = None
    if "hf" in formats:
        from xlt_jax.interop import hf_export

        hf_class = hf_export.architecture(run.model_config.name, run.head)  # unsupported: error, nothing written
    if storage.is_remote(out):
        _upload(run, out, formats, hf_class)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write(run, tmp, formats, hf_class)
        _replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xlt_jax.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="pretraining or fine-tuning run directory")
    parser.add_argument("--out", required=True, help="export directory (must not exist or be empty)")
    parser.add_argument("--format", default="orbax", help="comma-separated: orbax, hf (default orbax)")
    parser.add_argument("--step", type=int, default=0, help="checkpoint step (0 = the last)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    args = parser.parse_args(argv)
    try:
        out = export(args.workdir, args.out, formats=args.format, overwrite=args.overwrite, step=args.step)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
