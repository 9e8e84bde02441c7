r"""Alignment of a pretrained bilingual model's original and derived language; rows go to WORKDIR/results.jsonl
(task `align`, in percent): token-embedding NN accuracy align_nn_identity / align_nn_procrustes (REFERENCE_SPEC
§6; models with a transliterated vocabulary copy) and per layer contextual_retrieval_l<k> / contextual_cka_l<k>.

Arguments (`--config configs/align.py:pretrained=runs/en_translit`):
  pretrained=PATH    pretraining WORKDIR of a bilingual run (original + derived language)
  step=0             its checkpoint (0 = the last)
  train=0.05         share of the V token pairs that fits the orthogonal map (the paper's documented run)
  valid=0.9          share of the pairs scored (the reference script's defaults are 0.1 / 0.4)
  seed=0             shuffles the pairs; the split is kept in WORKDIR and reused by later runs
  model_name=        the rows' `model` ("" = the pretraining run's directory name); name it as the protocol
                     names the bilingual model, so `correlate` pairs the rows with that model's Δ
  corpus=            the rows' `corpus`: the model's pretraining corpus variant ("" = unlabelled)
  sentences=200      held-out sentences for the per-layer contextual alignment (0 = skip it)

  python -m xlt_jax.align --config configs/align.py:pretrained=runs/en_translit --workdir runs/results
"""

import pathlib
import runpy

import ml_collections

from xlt_jax.config_utils import parse_arg

_pretrain = runpy.run_path(str(pathlib.Path(__file__).parent / "pretrain" / "common.py"))


def get_config(arg=None):
    a = parse_arg(arg, pretrained="", step=0, train=0.05, valid=0.9, seed=0, model_name="", corpus="",
                  sentences=200)
    c = ml_collections.ConfigDict()
    c.pretrained = a.pretrained  # pretraining WORKDIR (config.json, tokenizer/, checkpoints/)
    c.step = a.step  # its checkpoint (0 = the last)
    c.train_fraction = a.train  # share of token pairs fitting the Procrustes map
    c.valid_fraction = a.valid  # share of token pairs scored (disjoint from the train share)
    c.seed = a.seed  # pair shuffle; the split file WORKDIR/align_split_V<V>_seed<seed>.npz fixes it for reruns
    c.model_name = a.model_name  # rows' `model` field; "" = the pretraining run's directory name
    c.corpus = a.corpus  # rows' `corpus` field: the pretraining corpus variant ("" = unlabelled)
    c.contextual = ml_collections.ConfigDict(dict(
        sentences=a.sentences,  # held-out sentences (the language's first evaluation file); 0 = no contextual rows
        max_len=128,  # pieces per sentence, <s> and </s> included (at most the model's max_len)
        batch_size=32,  # sentences per forward pass (a multiple of the mesh's batch shards)
        transform_seed=0,  # keys the derived sentences (permutations)
    ))  # fmt: skip
    c.mesh = _pretrain["mesh_block"]()  # device mesh + logical-axis rules (configs/pretrain/common.py)
    return c
