r"""Evaluate a fine-tuned model (or, for Tatoeba, a pretrained one) on targets; rows go to WORKDIR/results.jsonl.

Arguments (`--config configs/evaluate.py:finetuned=runs/en_inv/pos,targets=en:none+en:inv,setting=BZ`):
  finetuned=PATH     fine-tuned WORKDIR (written by xlt_jax.finetune); its task is evaluated
  task=              "" = the fine-tuned task; tatoeba = retrieval with a pretrained model (no fine-tuning)
  pretrained=PATH    pretraining WORKDIR (task=tatoeba)
  targets=en:none    '+'-joined lang:transform targets (en:none+en:inv+en:translit+inv+fr)
  split=             "" = dev (tatoeba: test; NLI fine-tuned on XNLI dev: test)
  source=            data source ("" = the task's default, xlt_jax/data/tasks/sources.py)
  setting=           BZ | BS | MZ | "" (applied to the rows it describes, see xlt_jax/finetuning/evaluation.py)
  prediction_bio=    as_emitted (default, the reference) | repaired: how POS/NER predictions are scored under a
                     reordering (gold BIO is re-canonicalised in reading order; repaired does the same to
                     the predicted tags; only NER's BIO tags are affected, see README)
  model_name=        the rows' `model` ("" = the pretraining run's directory name)
  corpus=            the rows' `corpus`: corpus variant of the experiment's bilingual pretraining corpus
  twin=              the rows' `twin`: for a monolingual model, the `model` of the bilingual model whose MZ
                     baseline it is (the protocol table pairs MZ with BZ/BS through it)
  smoke              at most 64 examples per target
  examples, batch: max examples per target, evaluation batch size

  python -m xlt_jax.evaluate --config configs/evaluate.py:finetuned=runs/en_mono/pos,targets=en:inv,setting=MZ \
      --workdir runs/results
  python -m xlt_jax.evaluate \
      --config configs/evaluate.py:task=tatoeba,pretrained=runs/en_inv,targets=en:inv,setting=BZ --workdir runs/results
"""

import pathlib
import runpy

import ml_collections

from xlt_jax.config_utils import parse_arg

_pretrain = runpy.run_path(str(pathlib.Path(__file__).parent / "pretrain" / "common.py"))
_finetune = runpy.run_path(str(pathlib.Path(__file__).parent / "finetune" / "common.py"))


def get_config(arg=None):
    a = parse_arg(arg, finetuned="", task="", pretrained="", targets="en:none", split="", source="", setting="",
                  prediction_bio="as_emitted", model_name="", corpus="", twin="", smoke=False, examples=0, batch=0)
    c = ml_collections.ConfigDict()
    c.finetuned = a.finetuned  # fine-tuned WORKDIR (finetune.json, tokenizer/, checkpoints/)
    c.checkpoint_step = 0  # its checkpoint to evaluate (0 = the last)
    c.task = a.task  # "" = the fine-tuned task; tatoeba = pretrained model, no fine-tuning
    c.pretrained = a.pretrained  # pretraining WORKDIR, for task=tatoeba
    c.pretrained_step = 0  # its checkpoint (0 = the last)
    c.targets = a.targets  # '+'-joined lang:transform; a transform part (inv, syntax:hi) continues the previous one
    c.split = a.split  # "" = dev (tatoeba: test; NLI fine-tuned on XNLI dev: test), REFERENCE_SPEC §0.9
    c.source = a.source  # "" = the task's default data source per language
    c.setting = a.setting  # BZ | BS | MZ | "" : protocol setting of the rows it describes
    c.prediction_bio = a.prediction_bio  # as_emitted | repaired: predicted BIO re-canonicalised before scoring
    c.model_name = a.model_name  # rows' `model` field; "" = the pretraining run's directory name
    c.corpus = a.corpus  # rows' `corpus`: the bilingual pretraining corpus variant ("" = unlabelled)
    c.twin = a.twin  # rows' `twin`: a monolingual model's bilingual partner (its MZ baseline); "" for BZ/BS
    c.transform_seed = 0  # keys the evaluation data's transformation (permutations)
    c.syntax = _pretrain["syntax_block"]()  # trees of a syntax target where the data has no gold ones
    c.max_examples = 1000 if a.task == "tatoeba" else 0  # first N examples per target (0 = all; Tatoeba: 1000, §4.6)
    c.max_len = 0  # 0 = the fine-tuned run's max_len (tatoeba: 128)
    c.batch_size = 32  # evaluation batch (rows are padded per batch; results do not depend on it)
    c.bucket = 0  # 0 = the fine-tuned run's bucket (tatoeba: 32)
    c.tatoeba_layer = -1  # hidden-state index pooled for Tatoeba (0 = embeddings); -1 = num_layers // 2
    c.resize_seed = 0  # initialises the new, untrained vocabulary rows of an MZ transliteration target
    c.qa_n_best = 20  # QA post-processing: start/end candidates per feature (HF default)
    c.qa_max_answer_len = 30  # QA post-processing: longest answer in pieces (HF default)
    c.mesh = _pretrain["mesh_block"]()  # device mesh + logical-axis rules (configs/pretrain/common.py)
    c.distributed = _finetune["distributed_block"]()  # multi-host start-up
    if a.smoke:
        c.max_examples = 64
    if a.examples:
        c.max_examples = a.examples
    if a.batch:
        c.batch_size = a.batch
    c.lock()
    return c
