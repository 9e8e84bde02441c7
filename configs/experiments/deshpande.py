r"""The derived-language protocol of Deshpande, Talukdar & Narasimhan (2022): BZ, BS, MZ and the two Δs.

  python -m xlt_jax.experiments.protocol \
      --config configs/experiments/deshpande.py:lang=en,transform=translit+inv,tasks=pos+ner+nli+qa+tatoeba \
      --workdir runs/deshpande_en_translit_inv [--dry_run]

Pretrains (or reuses) a bilingual model (LANG + LANG:TRANSFORM) and a monolingual one (LANG only),
fine-tunes each task on the original and on the derived training data, evaluates (REFERENCE_SPEC §4.1):
  BZ  bilingual model, fine-tuned on the original, evaluated on the derived dev set
  BS  bilingual model, fine-tuned and evaluated on the derived language
  MZ  monolingual model, fine-tuned on the original, evaluated on the derived dev set (with
      transliteration its vocabulary is resized to 2V rows, the new rows untrained, §1.4)
  ""  orig→orig and the cross-lingual table: original-language fine-tunes evaluated on every language
      the data offers for the task (train on LANG, test on all)
Tatoeba is not fine-tuned: BZ / MZ retrieve derived sentences with the pretrained models themselves.
Rerunning the same command skips finished steps (WORKDIR/<step>/DONE.json) and resumes a crashed one.

Arguments:
  lang=en            the natural language
  transform=         derived language (transforms.parse spec; default translit+inv)
  tasks=             '+'-joined subset of pos+ner+nli+qa+tatoeba ("" = all five; with smoke: pos+tatoeba)
  objective=mlm      mlm (RoBERTa) | span (T5; tagging/QA heads on the encoder)
  model=             model preset (pretraining configs' `model`)
  seeds=42           '+'-joined fine-tuning seeds; the report shows mean, spread and seed-paired Δs
  corpus=parallel    the bilingual corpus variant (the paper's Table 8): parallel (derived = T(original)) |
                     nonparallel_same (derived = T(the other half of the same domain's text)) |
                     nonparallel_diff (derived = T(text of another domain)); it selects the pretraining
                     text (`pretrain.*.corpus.variant`, domains in `corpus.same_domain` / `other_domain`)
                     and is written to every row as `corpus`; the report keeps variants apart
  align=false        also compute the alignment rows of a transliteration model (step align/bilingual)
  trees=gold         syntax.trees, where `syntax:LANG` gets its trees: gold (UD trees only: pretraining on the
                     treebank's sentences, POS only, other tasks skipped) | udpipe | stanza (a parser: pretraining
                     on corpus.source = lang:{lang} parsed and reordered, and NER, NLI and Tatoeba too; POS keeps
                     gold trees). udpipe needs `python -m xlt_jax.data.parse train --lang LANG` first (en, fr
                     here; no hi/ar treebank to train on); syntax.model overrides the model path
  smoke              tiny everything: the whole protocol in a few minutes on a CPU
  steps, batch, seq, lr, vocab: pretraining overrides (both models)
  ft_epochs, ft_steps, ft_examples, ft_lr, ft_batch, ft_max_len: fine-tuning overrides (every task)
  eval_examples      max examples per evaluation target (0 = the evaluate config's)
  crosslingual=true  evaluate the original-language fine-tunes on every other language too
  xl_langs=          '+'-joined languages for the cross-lingual table ("" = every language the data offers)
  bilingual=PATH, monolingual=PATH: reuse finished pretraining run directories instead of pretraining

Every knob of the nested runs is visible and overridable, e.g. `--config.finetune.pos.train.epochs=3`,
`--config.pretrain.bilingual.train.steps=100000`, `--config.evaluate.tatoeba.max_examples=500`.
`lang`, `transform`, `corpus`, `tasks` and `seeds` at the top level are authoritative: the plan writes them
into the nested configs (data.langs / data.transform / corpus.variant / lang / train_transform / seed).
The monolingual model pretrains on the bilingual model's original side: the plan copies
`pretrain.bilingual.corpus.*` (but `derived_source`) into it (for `syntax:LANG` with gold trees:
`treebank:{lang}`, the UD train trees' sentences, not the language's whole corpus; with a parser the whole
corpus; for a non-parallel variant: the same half).
The plan shows each model's corpus.
"""

import pathlib
import runpy

import ml_collections

from xlt_jax.config_utils import parse_arg

CONFIGS = pathlib.Path(__file__).resolve().parents[1]
ALL_TASKS = ("pos", "ner", "nli", "qa", "tatoeba")
FINETUNED_TASKS = ("pos", "ner", "nli", "qa")
SMOKE_TASKS = "pos+tatoeba"


def _get(rel: str, arg: str) -> ml_collections.ConfigDict:
    return runpy.run_path(str(CONFIGS / rel))["get_config"](arg)


def _args(**kwargs) -> str:
    """`key=value,...` of the non-default (truthy) values; a bare key for True."""
    items = []
    for key, value in kwargs.items():
        if value is True:
            items.append(key)
        elif value:
            items.append(f"{key}={value}")
    return ",".join(items)


def get_config(arg=None):
    a = parse_arg(arg, lang="en", transform="translit+inv", tasks="", objective="mlm", model="", seeds="42",
                  smoke=False, steps=0, batch=0, seq=0, lr=0.0, vocab=0, ft_epochs=0, ft_steps=0, ft_examples=0,
                  ft_lr=0.0, ft_batch=0, ft_max_len=0, eval_examples=0, crosslingual=True, xl_langs="",
                  bilingual="", monolingual="", corpus="parallel", align=False, trees="gold")
    c = ml_collections.ConfigDict()
    c.lang = a.lang  # the natural language (fine-tuning and protocol evaluation language)
    c.transform = a.transform  # the derived language: LANG:TRANSFORM
    c.tasks = a.tasks or (SMOKE_TASKS if a.smoke else "+".join(ALL_TASKS))  # '+'-joined, run in this order
    c.seeds = a.seeds  # '+'-joined fine-tuning seeds (one fine-tune per seed and setting)
    c.corpus = a.corpus  # bilingual corpus variant: parallel | nonparallel_same | nonparallel_diff (rows' `corpus`)
    c.compilation_cache = "auto"  # persistent JAX compile cache: auto = WORKDIR/jax_cache, "" = off, or a path
    # Trees of a syntax transform (trees: gold | udpipe | stanza; model: parser path, "" = the default); the plan
    # writes this block into every pretraining, fine-tuning and evaluation config.
    c.syntax = runpy.run_path(str(CONFIGS / "pretrain" / "common.py"))["syntax_block"](a.trees)

    pre_args = _args(objective=a.objective, model=a.model, smoke=a.smoke, steps=a.steps, batch=a.batch,
                     seq=a.seq, lr=a.lr, vocab=a.vocab)
    c.pretrain = ml_collections.ConfigDict()
    c.pretrain.bilingual = _get("pretrain/bilingual.py",
                                _args(lang=a.lang, transform=a.transform, trees=a.trees) + "," + pre_args)
    c.pretrain.monolingual = _get("pretrain/monolingual.py", _args(lang=a.lang) + "," + pre_args)
    c.pretrain.bilingual_dir = a.bilingual  # "" = pretrain into WORKDIR/pretrain/bilingual; else reuse this run
    c.pretrain.monolingual_dir = a.monolingual  # "" = pretrain into WORKDIR/pretrain/monolingual
    c.pretrain.share_tokenizer = True  # the monolingual model uses the bilingual run's tokenizer (same pieces)
    c.pretrain.bilingual_name = ""  # rows' `model`; "" = bilingual-LANG-TRANSFORM
    c.pretrain.monolingual_name = ""  # "" = monolingual-LANG

    ft_args = _args(smoke=a.smoke, epochs=a.ft_epochs, steps=a.ft_steps, examples=a.ft_examples, lr=a.ft_lr,
                    batch=a.ft_batch, max_len=a.ft_max_len)
    c.finetune = ml_collections.ConfigDict()
    for task in FINETUNED_TASKS:  # `pretrained`, `lang`, `train_transform`, `seed` are set by the plan
        c.finetune[task] = _get(f"finetune/{task}.py", ft_args)

    c.evaluate = ml_collections.ConfigDict()
    for task in ALL_TASKS:  # `finetuned`/`pretrained`, `targets`, `setting`, `model_name`, `corpus`, `twin`: the plan
        ev_args = _args(task="tatoeba" if task == "tatoeba" else "", smoke=a.smoke, examples=a.eval_examples)
        c.evaluate[task] = _get("evaluate.py", ev_args)

    c.align = ml_collections.ConfigDict()
    c.align.enabled = a.align  # step align/bilingual (transliteration models only: a derived vocabulary copy)
    c.align.analysis = _get("align.py", "sentences=32" if a.smoke else "")  # pretrained, model_name, corpus: the plan

    c.crosslingual = ml_collections.ConfigDict(dict(
        enabled=a.crosslingual,  # evaluate original-language fine-tunes (Tatoeba: pretrained models) on other langs
        models="bilingual+monolingual",  # whose cross-lingual rows to produce
        langs=a.xl_langs,  # '+'-joined target languages; "" = every language the data offers for the task
    ))

    if a.smoke:
        apply_smoke(c, pretrain_steps=a.steps or 10, finetune_steps=a.ft_steps or 10, finetune_lr=a.ft_lr or 1e-3)
    c.lock()
    return c


def apply_smoke(c: ml_collections.ConfigDict, *, pretrain_steps: int, finetune_steps: int, finetune_lr: float) -> None:
    """Few steps, one batch shape per model (each run compiles once: compiles dominate on CPU), and a
    fine-tuning rate high enough that ten steps move the task head off chance."""
    for pre in (c.pretrain.bilingual, c.pretrain.monolingual):
        pre.train.steps = pretrain_steps
        pre.train.eval_every = 0
        pre.train.checkpoint_every = pretrain_steps
        pre.train.log_every = 5
    for task in FINETUNED_TASKS:
        ft = c.finetune[task]
        ft.bucket = int(ft.max_len)  # one bucket length: one compiled train step
        ft.train.max_steps = finetune_steps
        ft.optimizer.learning_rate = finetune_lr
    for task in ALL_TASKS:
        c.evaluate[task].bucket = 64  # = smoke max_len: one compiled predict step per model
