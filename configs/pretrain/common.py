"""Base pretraining config: the reference recipe (REFERENCE_SPEC §3.2) with every knob named once.

The run configs (`bilingual.py`, `monolingual.py`, `multilingual.py`) parse their `key=value` argument and
call `pretrain_config(...)`. Defaults reproduce the paper's RoBERTa-8 MLM run: seq 512, global batch 128,
500k steps, AdamW lr 1e-4 (β 0.9/0.999, ε 1e-8, no weight decay), 10k warmup then linear decay to 0,
gradient clipping 1.0, MLM 15% (80/10/10). `objective=span` switches to T5 v1.1 span corruption.
`smoke` shrinks everything so a run finishes in well under a minute on a 2-core CPU.

Any key can be overridden on the command line: `--config.train.steps=1000`; unknown keys are an error.
"""

from __future__ import annotations

import ml_collections

from xlt_jax.errors import ConfigError
from xlt_jax.models import default_model_config

OBJECTIVE_MODEL = {"mlm": "roberta", "span": "t5"}


def data_block(mode: str, langs: str, transform: str, objective: str, alpha: float) -> ml_collections.ConfigDict:
    """`config.data`: the keys of `xlt_jax.data.pretrain.pipeline.default_config()` (the pipeline checks them)."""
    return ml_collections.ConfigDict(dict(
        mode=mode,  # monolingual | bilingual | multilingual
        langs=langs,  # '+'-separated ISO codes; bilingual with one language = original + derived language
        transform=transform,  # derived language (transforms.parse spec: inv, perm, translit, translit+inv, ...)
        transform_seed=0,  # keys the derived language itself (permutations, keep sets)
        alpha=alpha,  # multilingual temperature: q_l ∝ p_l^alpha (0.3 as XLM-R / mT5)
        seq_len=512,  # MLM block length; span objective: encoder input length
        global_batch_size=128,  # sequences per optimizer step over all hosts (16 per core × 8 TPU cores)
        eval_batch_size=0,  # 0 = global_batch_size
        objective=objective,  # mlm | span
        mlm_probability=0.15,  # share of non-special positions predicted
        mask_rate=0.8,  # of those: replaced by <mask>
        random_rate=0.1,  # ... by a random id (the rest stay unchanged)
        random_replacement="original_vocab",  # original_vocab (reference) | same_language
        # MLM positions projected onto the vocabulary per sequence (Google BERT's max_predictions_per_seq):
        # -1 = sized from mlm_probability (overflow < 1e-5 of sequences, counted), 0 = all positions (HF).
        max_predictions_per_seq=-1,
        # >1: that many sequences share one budget of projected rows (fewer rows, the same predictions; the
        # global and eval batches must split into whole groups per shard); 0 = a budget per sequence; -1 = the
        # largest group the batch layout allows (one per batch shard and microbatch; resolved from the mesh).
        mlm_group_size=0,
        noise_density=0.15,  # span corruption: share of noise tokens
        mean_noise_span_length=3.0,  # span corruption: mean span length
        num_sentinels=100,  # span corruption: sentinel ids above the (copied) vocabulary
        group_lines=0,  # pack per group of N lines like HF run_mlm (1000); 0 = one stream
        eval_fraction=0.01,  # last share of each language's blocks held out for evaluation
        seed=42,  # shuffles, masks and spans (HF seed 42)
        cache_dir="",  # tokenized id shards; "" = $XLT_CACHE_DIR/shards or ~/.cache/xlt_jax/shards
    ))


def syntax_block(trees: str = "gold") -> ml_collections.ConfigDict:
    """`config.syntax`: where a `syntax:LANG` transform gets the trees it reorders (xlt_jax/data/parse)."""
    return ml_collections.ConfigDict(dict(
        # gold = gold UD trees only (pretraining: the treebank's sentences; tasks without trees cannot take syntax);
        # udpipe = parse the text with a UDPipe model trained here (python -m xlt_jax.data.parse train --lang L);
        # stanza = parse with Stanza, the paper's parser, where its models are installed. Gold trees always win.
        trees=trees,
        model="",  # parser: UDPipe file or Stanza dir, {lang} allowed; "" = $XLT_CACHE_DIR/parsers/udpipe/L.udpipe
    ))


def mesh_block() -> ml_collections.ConfigDict:
    """`config.mesh`: device mesh over ('data', 'fsdp', 'tensor') and the logical-axis rules."""
    return ml_collections.ConfigDict(dict(
        shape=(-1, 1, 1),  # devices per axis ('data', 'fsdp', 'tensor'); -1 = the rest
        rules=dict(  # logical axis -> mesh axis, tuple of axes, or None (replicated)
            batch=("data", "fsdp"),  # examples: split over both data-parallel axes
            length=None,  # sequence positions
            embed="fsdp",  # hidden size of parameters: FSDP shards them
            heads="tensor",  # attention heads: tensor parallel
            kv=None,  # per-head size
            mlp="tensor",  # FFN inner size: tensor parallel
            vocab="tensor",  # embedding rows / logits
            layers=None,  # scan axis of stacked layer parameters
            relpos_buckets=None,  # T5 relative position buckets
        ),
    ))


def pretrain_config(
    *,
    mode: str,
    langs: str,
    transform: str = "none",
    objective: str = "mlm",
    model: str = "",
    alpha: float = 0.3,
    smoke: bool = False,
    steps: int = 0,
    batch: int = 0,
    seq: int = 0,
    lr: float = 0.0,
    vocab: int = 0,
    trees: str = "gold",
) -> ml_collections.ConfigDict:
    """The full run config; zero-valued arguments keep the recipe (or smoke) value."""
    if objective not in OBJECTIVE_MODEL:
        raise ConfigError(f"objective: {objective!r} is not one of {sorted(OBJECTIVE_MODEL)}")
    c = ml_collections.ConfigDict()
    c.seed = 42  # parameter init and dropout keys (the data has its own data.seed)

    c.corpus = ml_collections.ConfigDict(dict(
        # Text of each language (evaluation sentences always removed): a source string with {lang}: lang:{lang} =
        # every pretraining text of the data directory; treebank:{lang} = the UD train trees' sentences, which a
        # syntax-derived language is made of when syntax.trees=gold (its default then; with a parser any source
        # is parsed and reordered); or text:PATH, conllu:PATH, tfds:NAME:SPLIT.
        source="treebank:{lang}" if "syntax:" in transform and trees == "gold" else "lang:{lang}",
        max_sentences=0,  # keep the first N sentences per language (0 = all; non-parallel: N per side)
        derived_source="",  # derived language's text made offline (e.g. syntax:hi from UD trees), {lang} allowed
        # Corpus-source variant (the paper's Table 8; xlt_jax/data/corpus_variants.py): parallel = derived is
        # T(the original sentences of `source`); nonparallel_same = original and derived source are disjoint,
        # equal halves of `same_domain`'s text; nonparallel_diff = that original half, derived source = text of
        # `other_domain`, cut to one size. The non-parallel variants ignore `source`.
        variant="parallel",
        split_seed=0,  # keys the halves and the subsets
        # Per language, '+'-joined pretraining source names (corpora.SOURCE_NAMES) of each domain:
        same_domain=dict(en="wikiann+squad", fr="wikiann", hi="wikiann", ar="wikiann"),  # Wikipedia
        other_domain=dict(en="ud+raw", fr="raw", hi="raw", ar="udpos+raw"),  # news / web (EWT, PADT, Leipzig)
    ))

    c.tokenizer = ml_collections.ConfigDict(dict(
        path="",  # a saved tokenizer directory to use; "" = train one on the corpus (saved to WORKDIR/tokenizer)
        vocab_size=40000,  # pieces incl. 5 specials and 256 bytes (the reference's 40000)
        model_type="bpe",  # bpe (reference: byte-level BPE) | unigram
        alpha=0.3,  # temperature of the language mix the tokenizer is trained on
        sentences_per_lang=0,  # cap per language while training the tokenizer (0 = all)
        seed=0,
    ))

    c.data = data_block(mode, langs, transform, objective, alpha)
    c.syntax = syntax_block(trees)

    c.model = default_model_config(OBJECTIVE_MODEL[objective])  # all keys: xlt_jax/models/presets.py
    c.model.preset = model or c.model.preset  # roberta: tiny | mini | small | roberta8; t5: tiny | small | base
    c.model.dtype = "bfloat16"  # compute dtype (fp32 master weights: param_dtype)
    c.model.param_dtype = "float32"
    c.model.scan_layers = True  # layers under nnx.scan (fast compiles)
    c.model.remat_policy = "none"  # none | full | dots_saveable | ... (models/stack.py REMAT_POLICIES)
    c.model.max_len = 512  # longest input the position table covers
    c.model.num_langs = 2  # per-language metric slots; raised to the data's language count at start-up

    c.optimizer = ml_collections.ConfigDict(dict(
        learning_rate=1e-4,  # peak learning rate
        warmup_steps=10_000,  # linear warmup from 0, then the schedule
        schedule="linear",  # linear (reference: to 0 at train.steps) | constant | wsd (decay over the last part)
        decay_fraction=0.2,  # wsd: share of train.steps spent decaying linearly to 0
        b1=0.9,
        b2=0.999,
        eps=1e-8,
        weight_decay=0.0,  # AdamW decoupled decay (biases and norm scales never decayed)
        clip_norm=1.0,  # clip by global gradient norm (0 = off)
    ))

    c.train = ml_collections.ConfigDict(dict(
        steps=500_000,  # optimizer updates
        grad_accum_steps=1,  # microbatches per update (global batch must split evenly)
        log_every=100,  # progress line + train metrics (averaged over the interval)
        eval_every=5_000,  # held-out MLM/span loss and accuracy every N steps and at the end (0 = never)
        eval_max_batches=0,  # held-out batches per evaluation (0 = all; languages are interleaved proportionally)
        checkpoint_every=5_000,  # Orbax checkpoint (model, optimizer, RNG, data iterator)
        max_to_keep=3,  # checkpoints kept
        async_checkpointing=True,  # write checkpoints in the background
        prefetch_batches=2,  # input batches built ahead in a background thread (the wait is logged)
        nonfinite_policy="stop",  # NaN/Inf loss or gradient: stop (last checkpoint stays good) | skip the update
        max_consecutive_skips=5,  # skip policy: this many skipped steps in a row still stop the run
        compilation_cache="auto",  # persistent XLA cache: auto = $XLT_CACHE_DIR/jax (~/.cache/xlt_jax/jax), "" = off
    ))

    c.mesh = mesh_block()

    c.distributed = ml_collections.ConfigDict(dict(
        coordinator_address="",  # host:port of process 0; "" = env JAX_COORDINATOR_ADDRESS, else single process
        num_processes=0,  # 0 = env JAX_NUM_PROCESSES (or auto-detected)
        process_id=-1,  # -1 = env JAX_PROCESS_ID (or auto-detected)
        initialize=False,  # call jax.distributed.initialize() even without an address (TPU pods auto-detect)
        heartbeat_timeout_seconds=100,  # a host silent this long is dead: the others abort (JAX's default)
    ))

    if smoke:
        apply_smoke(c)
    if steps:
        c.train.steps = steps
    if batch:
        c.data.global_batch_size = batch
    if seq:
        c.data.seq_len = seq
        c.model.max_len = max(c.model.max_len, seq)
    if lr:
        c.optimizer.learning_rate = lr
    if vocab:
        c.tokenizer.vocab_size = vocab
    return c


def apply_smoke(c: ml_collections.ConfigDict) -> None:
    """Tiny everything: a real end-to-end run in well under a minute on this 2-core CPU."""
    c.corpus.max_sentences = 3000
    c.tokenizer.vocab_size = 1000
    c.data.seq_len = 64
    c.data.global_batch_size = 16
    c.data.eval_fraction = 0.05
    c.model.preset = "tiny"
    c.model.dtype = "float32"  # this CPU has no bf16 units (ENV_NOTES §7)
    c.model.max_len = 64
    c.optimizer.learning_rate = 1e-3
    c.optimizer.warmup_steps = 2
    c.train.steps = 20
    c.train.log_every = 5
    c.train.eval_every = 10
    c.train.checkpoint_every = 10
