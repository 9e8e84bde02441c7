r"""Alignment of a pretrained bilingual model's two languages; rows go to WORKDIR/results.jsonl (task `align`).

A derived language (models with a transliterated vocabulary copy, REFERENCE_SPEC §6): token-embedding NN
accuracy align_nn_identity / align_nn_procrustes (%), with csls also align_csls_identity /
align_csls_procrustes (%), and gw_distance (Gromov-Wasserstein, a distance: lower = more isomorphic); any
derived language: per layer contextual_retrieval_l<k> / contextual_cka_l<k> (%).
A natural pair (a `lang+lang2` model, or two models with pretrained2): bilingual lexicon induction
bli_p1_nn_identity / bli_p1_nn_procrustes (+ bli_p1_csls_* with csls), P@1 in % on MUSE words that are
single tokens, and gw_distance.

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
  csls               also retrieve by CSLS (k=10 neighbours, Conneau et al. 2018) next to plain NN
  gw=500             most frequent tokens per side for the Gromov-Wasserstein distance (0 = no GW row)
  freq_sentences=20000  pretraining sentences per language counted to find the most frequent tokens
  pretrained2=PATH   a second model (natural pair: BLI and GW between the two models' tables); step2 its step
  pair=SRC-TGT       the natural pair's direction or, for a multilingual model, which two languages
  bli_test=0.25      share of single-token source words held out for BLI (seeded: MUSE's splits are missing)

  python -m xlt_jax.align --config configs/align.py:pretrained=runs/en_translit --workdir runs/results
  python -m xlt_jax.align --config configs/align.py:pretrained=runs/en_fr,csls --workdir runs/results
"""

import pathlib
import runpy

import ml_collections

from xlt_jax.config_utils import parse_arg

_pretrain = runpy.run_path(str(pathlib.Path(__file__).parent / "pretrain" / "common.py"))


def get_config(arg=None):
    a = parse_arg(arg, pretrained="", step=0, train=0.05, valid=0.9, seed=0, model_name="", corpus="",
                  sentences=200, csls=False, gw=500, freq_sentences=20000, pretrained2="", step2=0, pair="",
                  bli_test=0.25)
    c = ml_collections.ConfigDict()
    c.pretrained = a.pretrained  # pretraining WORKDIR (config.json, tokenizer/, checkpoints/)
    c.step = a.step  # its checkpoint (0 = the last)
    c.train_fraction = a.train  # share of token pairs fitting the Procrustes map
    c.valid_fraction = a.valid  # share of token pairs scored (disjoint from the train share)
    c.seed = a.seed  # pair shuffle; the split file WORKDIR/align_split_V<V>_seed<seed>.npz fixes it for reruns
    c.model_name = a.model_name  # rows' `model` field; "" = the pretraining run's directory name
    c.corpus = a.corpus  # rows' `corpus` field: the pretraining corpus variant ("" = unlabelled)
    c.csls = a.csls  # also retrieve by CSLS (k = 10) next to plain NN
    c.gw_tokens = a.gw  # most frequent tokens per side in the Gromov-Wasserstein distance (0 = no GW row)
    c.frequency_sentences = a.freq_sentences  # pretraining sentences per language counted for token frequencies
    c.pretrained2 = a.pretrained2  # a second model: BLI and GW between two models' tables ("" = one model)
    c.step2 = a.step2  # its checkpoint (0 = the last)
    c.pair = a.pair  # SRC-TGT of a natural pair ("" = the model's language order)
    c.bli_test = a.bli_test  # share of single-token source words held out (seeded; MUSE's splits are missing)
    c.contextual = ml_collections.ConfigDict(dict(
        sentences=a.sentences,  # held-out sentences (the language's first evaluation file); 0 = no contextual rows
        max_len=128,  # pieces per sentence, <s> and </s> included (at most the model's max_len)
        batch_size=32,  # sentences per forward pass (a multiple of the mesh's batch shards)
        transform_seed=0,  # keys the derived sentences (permutations)
    ))  # fmt: skip
    c.mesh = _pretrain["mesh_block"]()  # device mesh + logical-axis rules (configs/pretrain/common.py)
    return c
