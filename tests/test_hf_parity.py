"""xlt_jax RoBERTa against Hugging Face `RobertaForMaskedLM` with identical weights (extra `hf`).

The HF model is built from a config (no download). On padded batches of real English (UD EWT dev) encoded by
a real tokenizer, with dropout off: the same MLM logits, loss and gradients of every parameter, for scanned
and looped layers and a doubled (transliteration) vocabulary; the conversion round-trips exactly; and the
PyTorch peer, fed xlt_jax batches, takes the same optimizer steps as xlt_jax's train step.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import require_extra  # noqa: E402
from flax import nnx

torch = require_extra("torch", "hf")
transformers = require_extra("transformers", "hf")

from xlt_jax.data.pretrain import mlm  # noqa: E402
from xlt_jax.data.vocab import SPECIALS, VocabLayout  # noqa: E402
from xlt_jax.errors import ConfigError  # noqa: E402
from xlt_jax.interop import hf_roberta  # noqa: E402
from xlt_jax.models import build_model, default_model_config, resolve_model_config  # noqa: E402

LENGTH = 40
torch.set_num_threads(1)


def _config(vocab_size: int, scan: bool, dropout: float = 0.0):
    config = default_model_config("roberta", "tiny")
    config.update(dtype="float32", max_len=LENGTH, scan_layers=scan, dropout=dropout)
    return config, resolve_model_config(config, vocab_size)


@pytest.fixture(scope="module")
def real_batch(tiny_tokenizer, data_dir):
    """Eight EWT dev sentences, `<s> … </s>` padded to LENGTH (lengths differ), ~20% of real tokens predicted."""
    from xlt_jax.data.corpora import conllu_sentences

    sentences = list(itertools.islice(conllu_sentences(data_dir / "ud" / "en_ewt" / "dev.conllu.gz"), 8))
    ids = np.full((8, LENGTH), SPECIALS.pad, np.int32)
    for row, sentence in enumerate(sentences):
        pieces = [SPECIALS.bos, *tiny_tokenizer.encode(sentence)[: LENGTH - 2], SPECIALS.eos]
        ids[row, : len(pieces)] = pieces
    attention = (ids != SPECIALS.pad).astype(np.int32)
    assert attention.sum(1).min() < LENGTH - 5, "the batch must contain padding"
    return ids, attention


def _masked(ids: np.ndarray, layout: VocabLayout, *, shift: int = 0) -> dict[str, np.ndarray]:
    """A real MLM batch (the pipeline's masking), optionally written in the transliterated copy."""
    if shift:
        ids = np.where(np.isin(ids, (SPECIALS.bos, SPECIALS.eos, SPECIALS.pad)), ids, ids + shift)
    config = mlm.MLMConfig(probability=0.2)
    batch = mlm.mask_tokens(
        ids, layout=layout, seed=3, example_ids=np.arange(len(ids)), draws=np.zeros(len(ids)), config=config
    )
    return batch | {"lang_id": np.zeros(len(ids), np.int32)}


def _ours_and_theirs(config, spec, seed: int = 0):
    model = build_model(config, spec.vocab_size, rngs=nnx.Rngs(seed))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    # Move LayerNorm scales, biases and the position rows off their initial values so a mix-up shows.
    params = jax.tree.map(
        lambda x: x + 0.05 * jax.random.normal(jax.random.key(seed + 1), x.shape), nnx.to_pure_dict(params)
    )
    hf = transformers.RobertaForMaskedLM(hf_roberta.hf_config(spec, attn_implementation="eager"))
    hf.load_state_dict(
        {k: torch.from_numpy(v.copy()) for k, v in hf_roberta.to_hf_state_dict(jax.device_get(params)).items()},
        strict=True,
    )
    hf.eval()
    return graphdef, params, rest, hf


@pytest.mark.parametrize(
    "scan, copies", [(False, 1), (True, 1), (True, 2)], ids=["loop", "scan", "scan-translit-vocab"]
)
def test_logits_loss_and_gradients_match_hugging_face(real_batch, tiny_tokenizer, scan, copies):
    ids, attention = real_batch
    layout = tiny_tokenizer.layout(copies=copies)
    config, spec = _config(layout.size, scan)
    graphdef, params, rest, hf = _ours_and_theirs(config, spec)
    batch = _masked(ids, layout, shift=tiny_tokenizer.base_size * (copies - 1))
    jbatch = {k: jnp.asarray(v) for k, v in batch.items()}

    def loss_fn(p):
        return nnx.merge(graphdef, p, rest).loss(jbatch, deterministic=True)[0]

    loss, grads = jax.value_and_grad(loss_fn)(params)
    logits = nnx.merge(graphdef, params, rest)(jbatch["input_ids"], jbatch["attention_mask"])

    labels = np.where(batch["loss_mask"] > 0, batch["targets"], -100)
    out = hf(
        input_ids=torch.from_numpy(batch["input_ids"].astype(np.int64)),
        attention_mask=torch.from_numpy(attention.astype(np.int64)),
        labels=torch.from_numpy(labels.astype(np.int64)),
    )
    out.loss.backward()
    real = attention.astype(bool)
    assert np.abs(np.asarray(logits)[real] - out.logits.detach().numpy()[real]).max() < 1e-4
    assert float(loss) == pytest.approx(float(out.loss.detach()), abs=1e-5)

    ours = hf_roberta.to_hf_state_dict(jax.device_get(grads))
    theirs = {name: p.grad.numpy() for name, p in hf.named_parameters()}
    assert set(theirs) <= set(ours)
    scale = max(float(np.abs(g).max()) for g in theirs.values())
    for name, grad in theirs.items():
        # Key biases get no gradient (softmax is shift-invariant): both sides are rounding noise there.
        np.testing.assert_allclose(ours[name], grad, atol=2e-5 * scale, rtol=1e-3, err_msg=name)


def test_dropout_gives_the_same_loss_and_gradient_distributions_as_hugging_face(real_batch, tiny_tokenizer):
    """With dropout on, the two models cannot agree draw by draw, but over many draws the mean and spread of the
    loss and of every gradient must agree (same places, same rate, same scaling, independent masks): a training
    difference that shows only with dropout would show here. Rate 0.3 to make dropout's share of the noise large."""
    draws = 64
    ids, attention = real_batch
    layout = tiny_tokenizer.layout()
    config, spec = _config(layout.size, scan=True, dropout=0.3)
    graphdef, params, rest, hf = _ours_and_theirs(config, spec)
    batch = _masked(ids, layout)
    jbatch = {k: jnp.asarray(v) for k, v in batch.items()}
    grad_fn = jax.jit(jax.value_and_grad(
        lambda p, key: nnx.merge(graphdef, p, rest).loss(jbatch, deterministic=False, dropout_rng=key)[0]))
    ours_loss, ours_grads = [], []
    for i in range(draws):
        loss, grads = grad_fn(params, jax.random.key(i))
        ours_loss.append(float(loss))
        ours_grads.append(hf_roberta.to_hf_state_dict(jax.device_get(grads)))
    hf.train()
    labels = torch.from_numpy(np.where(batch["loss_mask"] > 0, batch["targets"], -100).astype(np.int64))
    inputs = dict(input_ids=torch.from_numpy(batch["input_ids"].astype(np.int64)),
                  attention_mask=torch.from_numpy(attention.astype(np.int64)), labels=labels)
    theirs_loss, theirs_grads = [], []
    for i in range(draws):
        torch.manual_seed(i)
        hf.zero_grad()
        out = hf(**inputs)
        out.loss.backward()
        theirs_loss.append(float(out.loss.detach()))
        theirs_grads.append({name: p.grad.numpy().copy() for name, p in hf.named_parameters()})

    se = np.sqrt((np.var(ours_loss) + np.var(theirs_loss)) / draws)
    assert abs(np.mean(ours_loss) - np.mean(theirs_loss)) < 4 * se, (np.mean(ours_loss), np.mean(theirs_loss), se)
    assert 0.7 < np.std(ours_loss) / np.std(theirs_loss) < 1.4
    far, total = 0, 0
    for name in theirs_grads[0]:
        if "attention.self.key.bias" in name:  # no gradient in either (softmax is shift-invariant)
            continue
        a = np.stack([g[name] for g in ours_grads])
        b = np.stack([g[name] for g in theirs_grads])
        z = np.abs(a.mean(0) - b.mean(0)) / (np.sqrt((a.var(0) + b.var(0)) / draws) + 1e-12)
        far, total = far + int(np.sum(z > 4)), total + z.size
        spread = float(np.mean(a.var(0))) / float(np.mean(b.var(0)))
        assert 0.8 < spread < 1.25, (name, spread)  # the noise dropout puts into this parameter's gradient
    assert far / total < 0.002, (far, total)  # means agree: > 4 standard errors apart in 1 of 15,000 by chance


def test_xlm_roberta_converts_to_xlt_jax_with_the_same_logits(real_batch, tiny_tokenizer):
    """HF → xlt_jax with XLM-R's class: a random `XLMRobertaForMaskedLM` (every weight perturbed, so LayerNorms
    and biases are not at their initial values), converted, gives the same MLM logits on a padded real batch."""
    ids, attention = real_batch
    layout = tiny_tokenizer.layout()
    config, spec = _config(layout.size, scan=True)
    xlmr_config = transformers.XLMRobertaConfig(**hf_roberta.hf_config(spec).to_dict())
    torch.manual_seed(0)
    hf = transformers.XLMRobertaForMaskedLM(xlmr_config)
    with torch.no_grad():
        for p in hf.parameters():
            p.add_(0.05 * torch.randn_like(p))
    hf.eval()
    params = hf_roberta.from_hf_state_dict(hf.state_dict(), spec, scan_layers=True)
    abstract = nnx.eval_shape(lambda: build_model(config, spec.vocab_size, rngs=nnx.Rngs(0)))
    graphdef, _, rest = nnx.split(abstract, nnx.Param, ...)
    batch = _masked(ids, layout)
    logits = jax.jit(lambda p, i, m: nnx.merge(graphdef, p, rest)(i, m))(params, batch["input_ids"], attention)
    with torch.no_grad():
        theirs = hf(input_ids=torch.from_numpy(batch["input_ids"].astype(np.int64)),
                    attention_mask=torch.from_numpy(attention.astype(np.int64))).logits.numpy()
    real = attention.astype(bool)
    delta = float(np.abs(np.asarray(logits)[real] - theirs[real]).max())
    print(f"XLM-R HF→xlt_jax max |Δ logits| {delta:.2e}")
    assert delta < 1e-4


def test_conversion_round_trips_and_checks_shapes(tiny_tokenizer):
    config, spec = _config(tiny_tokenizer.base_size, scan=True)
    model = build_model(config, spec.vocab_size, rngs=nnx.Rngs(1))
    params = jax.device_get(nnx.to_pure_dict(nnx.state(model, nnx.Param)))
    sd = hf_roberta.to_hf_state_dict(params)
    assert sd["lm_head.decoder.weight"] is sd["roberta.embeddings.word_embeddings.weight"]
    for scan in (True, False):
        back = hf_roberta.from_hf_state_dict(sd, spec, scan_layers=scan)
        assert hf_roberta.to_hf_state_dict(back).keys() == sd.keys()
        for name, value in hf_roberta.to_hf_state_dict(back).items():
            np.testing.assert_array_equal(value, sd[name], err_msg=name)
    # XLM-R checkpoints carry a pooler; a missing layer or a wrong vocabulary is an error that names it.
    with_pooler = sd | {"roberta.pooler.dense.weight": np.zeros((64, 64), np.float32)}
    hf_roberta.from_hf_state_dict(with_pooler, spec, scan_layers=True)
    missing = {k: v for k, v in sd.items() if not k.startswith("roberta.encoder.layer.1.")}
    with pytest.raises(ConfigError, match="roberta.encoder.layer.1"):
        hf_roberta.from_hf_state_dict(missing, spec, scan_layers=True)
    _, bigger = _config(2 * tiny_tokenizer.base_size, scan=True)
    with pytest.raises(ConfigError, match="vocab_size"):
        hf_roberta.from_hf_state_dict(sd, bigger, scan_layers=True)


def test_torch_peer_takes_the_same_adamw_steps_as_the_train_step(real_batch, tiny_tokenizer):
    """Same weights, same batches, same AdamW/clip/schedule settings, dropout off: the same parameters after
    three updates, so a side-by-side loss curve compares models and pipelines, not optimizers."""
    import ml_collections

    from xlt_jax.interop.torch_peer import TorchMlmPeer
    from xlt_jax.training import optimizer, partitioning, steps
    from xlt_jax.training import state as state_lib

    ids, _ = real_batch
    layout = tiny_tokenizer.layout()
    config, spec = _config(layout.size, scan=True)
    opt = ml_collections.ConfigDict(dict(
        learning_rate=3e-3, warmup_steps=2, b1=0.9, b2=0.98, eps=1e-6, weight_decay=0.01, clip_norm=0.5
    ))  # fmt: skip
    total = 5
    mesh_config = ml_collections.ConfigDict(dict(shape=(-1, 1, 1)))
    mesh = partitioning.make_mesh(mesh_config)
    rules = partitioning.logical_rules(dict(
        batch=("data", "fsdp"), length=None, embed="fsdp", heads="tensor", kv=None, mlp="tensor", vocab="tensor",
        layers=None, relpos_buckets=None,
    ))  # fmt: skip
    tx = optimizer.make_optimizer(opt, total)
    created = state_lib.create_train_state(lambda r: build_model(config, layout.size, rngs=r), tx, mesh, rules, 0)
    step = steps.make_train_step(
        created.model_def, tx, optimizer.learning_rate_schedule(opt, total), mesh=mesh,
        state_shardings=created.shardings,
    )
    peer = TorchMlmPeer(spec, opt, total, params=jax.device_get(created.state.params))
    state = created.state
    with partitioning.sharding_context(mesh, rules):
        for k in range(3):
            batch = mlm.mask_tokens(
                ids, layout=layout, seed=k, example_ids=np.arange(8), draws=np.zeros(8), max_predictions=16
            ) | {"lang_id": np.zeros(8, np.int32)}
            batch.pop("mlm_overflow")
            state, metrics = step(state, partitioning.global_batch(batch, mesh))
            theirs = peer.train_step(batch)
            assert float(metrics["loss"]) == pytest.approx(theirs["loss"], abs=1e-4)
            assert float(metrics["grad_norm"]) == pytest.approx(theirs["grad_norm"], rel=1e-3)
    ours = hf_roberta.to_hf_state_dict(jax.device_get(state.params))
    for name, value in peer.state_dict().items():
        if name in ours:
            np.testing.assert_allclose(ours[name], value, atol=2e-5, rtol=1e-4, err_msg=name)
