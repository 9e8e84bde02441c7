r"""Token-embedding alignment of a pretrained transliteration model (REFERENCE_SPEC §6); rows go to
WORKDIR/results.jsonl (task `align`, metrics align_nn_identity and align_nn_procrustes, in percent).

Arguments (`--config configs/align.py:pretrained=runs/en_translit`):
  pretrained=PATH    pretraining WORKDIR of a model whose vocabulary has a transliterated copy (translit, translit+inv)
  step=0             its checkpoint (0 = the last)
  train=0.05         share of the V token pairs that fits the orthogonal map (the paper's documented run)
  valid=0.9          share of the pairs scored (the reference script's defaults are 0.1 / 0.4)
  seed=0             shuffles the pairs; the split is kept in WORKDIR and reused by later runs
  model_name=        the rows' `model` ("" = the pretraining run's directory name)

  python -m xlt_jax.align --config configs/align.py:pretrained=runs/en_translit --workdir runs/results
"""

import ml_collections

from xlt_jax.config_utils import parse_arg


def get_config(arg=None):
    a = parse_arg(arg, pretrained="", step=0, train=0.05, valid=0.9, seed=0, model_name="")
    c = ml_collections.ConfigDict()
    c.pretrained = a.pretrained  # pretraining WORKDIR (config.json, tokenizer/, checkpoints/)
    c.step = a.step  # its checkpoint (0 = the last)
    c.train_fraction = a.train  # share of token pairs fitting the Procrustes map
    c.valid_fraction = a.valid  # share of token pairs scored (disjoint from the train share)
    c.seed = a.seed  # pair shuffle; the split file WORKDIR/align_split_V<V>_seed<seed>.npz fixes it for reruns
    c.model_name = a.model_name  # rows' `model` field; "" = the pretraining run's directory name
    return c
