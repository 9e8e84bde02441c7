"""Embedding alignment (REFERENCE_SPEC §6): the Procrustes map and NN search against the reference's own
formulas, the fixed pair split, CSLS against hubs, the Gromov-Wasserstein distance of isometric and
non-isometric clouds, lexicon induction with the real MUSE dictionary, and `python -m xlt_jax.align` on a
tiny transliteration model pretrained on real English text."""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import runpy
import subprocess
import sys

import numpy as np
import pytest

from xlt_jax import results
from xlt_jax.analysis import alignment, contextual, gw, lexicon, overlap, runner
from xlt_jax.data.vocab import VocabLayout
from xlt_jax.errors import ConfigError, DataFormatError
from xlt_jax.training import checkpointing

REPO = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def get_config(path: pathlib.Path, arg: str):
    return runpy.run_path(str(path))["get_config"](arg)


def rotated_pair(v: int = 600, d: int = 32, noise: float = 0.0, seed: int = 0):
    """E2 = E1·Q (+ noise) for a random orthogonal Q: Procrustes recovers Q, the identity search does not."""
    rng = np.random.default_rng(seed)
    e1 = rng.normal(size=(v, d))
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return e1, e1 @ q + noise * rng.normal(size=(v, d)), q


def test_orthogonal_map_is_the_reference_formula():
    e1, e2, q = rotated_pair(noise=0.1)
    src, tgt = alignment.unit_rows(e1), alignment.unit_rows(e2)
    u, _, vt = np.linalg.svd(tgt.T @ src)  # learn_orthogonal_mapping_one_one.py: W = U Vᵀ, map x ↦ x Wᵀ
    np.testing.assert_allclose(alignment.orthogonal_map(src, tgt), (u @ vt).T, atol=1e-10)
    r = alignment.orthogonal_map(src, tgt)
    np.testing.assert_allclose(r @ r.T, np.eye(len(r)), atol=1e-10)


def test_procrustes_recovers_a_rotation_that_identity_search_misses():
    e1, e2, _ = rotated_pair(noise=0.05)
    split = alignment.split_pairs(len(e1), 0.2, 0.7, seed=1)
    figures = alignment.align_embeddings(e1, e2, split)
    assert figures["align_nn_procrustes"] == 100.0 and figures["align_nn_procrustes_train"] == 100.0
    assert figures["align_nn_identity"] < 5.0
    identical = alignment.align_embeddings(e1, e1, split)
    assert identical["align_nn_identity"] == identical["align_nn_procrustes"] == 100.0
    assert identical["embedding_distance"] == 0.0
    np.testing.assert_allclose(figures["embedding_distance"], np.linalg.norm(e1 - e2, axis=1).mean())


def test_nn_search_ranks_all_candidates_and_counts_gold_hits():
    candidates = np.eye(4)
    queries = np.array([[1.0, 0, 0, 0], [0, 0.2, 0.9, 0], [0, 0, 0, 1.0]])
    assert alignment.nn_accuracy(queries, candidates, np.array([0, 1, 3])) == pytest.approx(200 / 3)


def reference_figures(e1: np.ndarray, e2: np.ndarray, train: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """REFERENCE_SPEC §6 steps 3, 5 and 6 written out: unit rows; W = U·Vᵀ from svd(E2[train]ᵀ·E1[train]);
    scores = (E1[rows]·Wᵀ)·E2ᵀ against ALL V derived rows; % of rows i whose argmax is i."""
    e1 = e1 / np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = e2 / np.linalg.norm(e2, axis=1, keepdims=True)
    u, _, vt = np.linalg.svd(e2[train].T @ e1[train])
    w = u @ vt

    def accuracy(queries, gold):
        return 100.0 * float(np.mean(np.argmax(queries @ e2.T, axis=1) == gold))

    return {"align_nn_identity": accuracy(e1[valid], valid), "align_nn_procrustes": accuracy(e1[valid] @ w.T, valid),
            "align_nn_procrustes_train": accuracy(e1[train] @ w.T, train)}


def test_nn_search_candidates_are_all_v_derived_rows_not_only_validation_ones():
    """§6.6: a validation token must beat every derived row. Decoys: 15 rows outside train and validation are
    exact copies of validation tokens' (mapped) targets, whose own rows carry noise; searching only the
    validation rows would miss them and report 100 instead of 90."""
    v, d, decoys = 300, 24, 15
    rng = np.random.default_rng(0)
    split = alignment.split_pairs(v, 0.2, 0.5, seed=2)
    unused = np.setdiff1d(np.arange(v), np.concatenate([split.train, split.valid]))
    assert len(split.valid) == 150 and len(unused) == 90
    for rotation in (np.eye(d), np.linalg.qr(rng.normal(size=(d, d)))[0]):
        e1 = rng.normal(size=(v, d))
        e2 = e1 @ rotation
        e2[split.valid] += 0.05 * rng.normal(size=(len(split.valid), d))
        e2[unused[:decoys]] = e1[split.valid[:decoys]] @ rotation  # exact, noise-free copies
        figures = alignment.align_embeddings(e1, e2, split)
        want = reference_figures(e1, e2, split.train, split.valid)
        assert figures["align_nn_procrustes"] == want["align_nn_procrustes"] == 90.0
        assert figures["align_nn_identity"] == want["align_nn_identity"]
        if np.array_equal(rotation, np.eye(d)):  # without a rotation the identity search faces the same decoys
            assert figures["align_nn_identity"] == 90.0


def test_procrustes_map_is_fitted_on_the_training_pairs_only():
    """§6.4-5: the map comes from the train pairs, and validation pairs are disjoint from them. Here the
    validation pairs follow another rotation than every other pair: a map fitted on (or with) validation
    pairs would score them near 100, the train-fitted map scores them like an unaligned search."""
    v, d = 400, 16
    rng = np.random.default_rng(1)
    split = alignment.split_pairs(v, 0.25, 0.5, seed=5)
    q_train, q_valid = (np.linalg.qr(rng.normal(size=(d, d)))[0] for _ in range(2))
    e1 = rng.normal(size=(v, d))
    e2 = e1 @ q_train
    e2[split.valid] = e1[split.valid] @ q_valid
    figures = alignment.align_embeddings(e1, e2, split)
    want = reference_figures(e1, e2, split.train, split.valid)
    assert {k: figures[k] for k in want} == want
    assert figures["align_nn_procrustes_train"] == 100.0 and figures["align_nn_procrustes"] < 5.0
    assert reference_figures(e1, e2, split.valid, split.valid)["align_nn_procrustes"] == 100.0  # the leak


def test_pair_split_is_seeded_disjoint_and_kept_in_a_file(tmp_path):
    split = alignment.split_pairs(1000, 0.05, 0.9, seed=3)
    assert (len(split.train), len(split.valid)) == (50, 900)
    assert not set(split.train) & set(split.valid)
    again = alignment.split_pairs(1000, 0.05, 0.9, seed=3)
    np.testing.assert_array_equal(split.valid, again.valid)
    assert not np.array_equal(split.valid, alignment.split_pairs(1000, 0.05, 0.9, seed=4).valid)
    path = tmp_path / "split.npz"
    first = alignment.split_for(path, 1000, 0.05, 0.9, 3)
    kept = alignment.split_for(path, 1000, 0.5, 0.5, 99)  # an existing file wins over new arguments
    np.testing.assert_array_equal(first.train, kept.train)
    with pytest.raises(ConfigError, match="splits a vocabulary of 1000"):
        alignment.split_for(path, 2000, 0.05, 0.9, 3)
    with pytest.raises(ConfigError, match="overlap"):
        alignment.split_pairs(1000, 0.5, 0.6, seed=0)
    with pytest.raises(ConfigError, match="valid_fraction"):
        alignment.split_pairs(1000, 0.1, 0.0, seed=0)
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(DataFormatError, match="bad.npz"):
        alignment.load_split(tmp_path / "bad.npz")


def test_vocabulary_copies_need_a_transliterated_copy():
    embedding = np.arange(2 * 10 * 3, dtype=np.float32).reshape(20, 3)
    original, derived = alignment.vocabulary_copies(embedding, VocabLayout(10, copies=2))
    np.testing.assert_array_equal(derived, embedding[10:])
    with pytest.raises(ConfigError, match="only transliteration"):
        alignment.vocabulary_copies(embedding[:10], VocabLayout(10, copies=1))


@pytest.fixture(scope="module")
def translit_run(data_dir, compile_cache, pretrain_smoke) -> pathlib.Path:
    """A tiny bilingual English + transliterated English RoBERTa: the smoke config, 6 steps."""
    return pretrain_smoke("bilingual.py", "lang=en,transform=translit,smoke", steps=6)


ALIGN_ARGS = "csls,gw=50,freq_sentences=300"  # CSLS rows next to NN; GW on the 50 most frequent tokens


def test_align_binary_appends_nn_csls_gw_and_contextual_rows(translit_run, tmp_path):
    workdir = tmp_path / "results"
    # 100 train pairs > 64 dimensions: a unique orthogonal map; CSLS rows next to NN; GW on 50 frequent tokens
    args = f"pretrained={translit_run},train=0.1,{ALIGN_ARGS}"
    proc = subprocess.run(
        [sys.executable, "-m", "xlt_jax.align", f"--config={CONFIGS / 'align.py'}:{args}", f"--workdir={workdir}"],
        capture_output=True, text=True, timeout=300, cwd=REPO, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    printed = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    rows = results.read_rows(results.results_path(workdir))
    assert [r.metric for r in rows] == [p["metric"] for p in printed]
    layers = range(3)  # the tiny preset: embeddings + 2 layers
    contextual_metrics = [f"contextual_{m}_l{k}" for k in layers for m in ("retrieval", "cka")]
    token_metrics = ["align_nn_identity", "align_nn_procrustes", "align_csls_identity", "align_csls_procrustes"]
    assert [r.metric for r in rows] == [*token_metrics, "gw_distance", *contextual_metrics]
    for row in rows:
        assert (row.task, row.lang, row.eval_transform) == ("align", "en", "translit")
        assert 0.0 <= row.value <= 100.0
    assert all(r.split == "valid" and r.extra["embedding_distance"] > 0 for r in rows[:4])
    assert all(r.split == "dev" and r.n_examples == 200 and "en_ewt" in r.extra["sentence_source"] for r in rows[5:])
    # The rows are the reference formula's figures on the checkpoint's own input embedding table (its raw
    # parameter: rows [0, V) original, [V, 2V) transliterated), split as the file says.
    from xlt_jax.finetuning.pretrained import load_pretrained

    model = load_pretrained(translit_run)
    embedding = runner.input_embedding(model)
    saved, _ = checkpointing.Checkpointer(translit_run / "checkpoints", max_to_keep=1).restore(6)  # as saved
    np.testing.assert_array_equal(embedding, np.asarray(saved["params"]["embeddings"]["word_embeddings"]["embedding"]))
    v = model.layout.base_size
    assert embedding.shape[0] == 2 * v and embedding.dtype == np.float32
    split = alignment.load_split(next(workdir.glob("align_split_V*_seed0.npz")))
    assert len(split.train) == 100 > embedding.shape[1]  # fewer pairs than dimensions leave the map undetermined
    want = reference_figures(embedding[:v], embedding[v:], split.train, split.valid)
    assert [r.value for r in rows[:2]] == [want["align_nn_identity"], want["align_nn_procrustes"]]
    figures = alignment.align_embeddings(*alignment.vocabulary_copies(embedding, model.layout), split, csls=True)
    assert [r.value for r in rows[:4]] == [figures[m] for m in token_metrics]
    assert len(split.valid) == rows[0].n_examples == int(0.9 * model.layout.base_size)
    # GW compares the 50 most frequent original tokens with the 50 most frequent derived ones (ids + V).
    gw_row = rows[4]
    sides = [overlap.Side("en"), overlap.Side("en", "translit")]
    (original, derived), _, _ = overlap.side_counts(sides, model.tokenizer, 300)
    top_original, top_derived = gw.most_frequent(original, 50), gw.most_frequent(derived, 50)
    np.testing.assert_array_equal(top_derived, top_original + model.layout.base_size)
    want = gw.gw_figures(embedding[top_original], embedding[top_derived])
    assert gw_row.value == want[gw.METRIC] > 0 and gw_row.n_examples == 50 and gw_row.split == "frequent_tokens"
    assert gw_row.extra["gw_independent"] == want["gw_independent"]
    # A rerun reuses the split file and gives the same figures.
    again = runner.run(get_config(CONFIGS / "align.py", args), workdir)
    assert [r.value for r in again] == [r.value for r in rows]
    assert len(list(workdir.glob("align_split_V*_seed0.npz"))) == 1


def test_align_refuses_a_pair_it_cannot_build(translit_run, tmp_path):
    with pytest.raises(ConfigError, match="pair='en-fr': expected SRC-TGT, two different languages of en"):
        runner.run(get_config(CONFIGS / "align.py", f"pretrained={translit_run},pair=en-fr"), tmp_path)
    both = f"pretrained={translit_run},pretrained2={translit_run}"  # two English models: no en-en dictionary
    with pytest.raises(ConfigError, match="no MUSE dictionary en-en"):
        runner.run(get_config(CONFIGS / "align.py", both), tmp_path)
    assert not results.results_path(tmp_path).exists()


def test_contextual_alignment_of_identical_sentences_is_perfect_at_every_layer(translit_run):
    from xlt_jax.data import transforms
    from xlt_jax.finetuning.pretrained import load_pretrained

    model = load_pretrained(translit_run)
    config = get_config(CONFIGS / "align.py", "")
    identity = transforms.parse("none", model.tokenizer.layout())
    figures, extra = contextual.contextual_alignment(
        model, "en", identity, sentences=40, max_len=32, batch_size=8, mesh_config=config.mesh
    )
    assert extra["sentences"] == 40 and len(figures) == 2 * 3
    for name, value in figures.items():
        assert value == pytest.approx(100.0), name


def test_contextual_alignment_under_syntax_reorders_gold_dev_trees(translit_run):
    from xlt_jax.data import transforms
    from xlt_jax.finetuning.pretrained import load_pretrained

    model = load_pretrained(translit_run)
    config = get_config(CONFIGS / "align.py", "")
    composed = transforms.parse("translit+syntax:fr", model.tokenizer.layout())  # the replicate grid's cell
    figures, extra = contextual.contextual_alignment(
        model, "en", composed, sentences=30, max_len=32, batch_size=8, mesh_config=config.mesh
    )
    assert extra["sentences"] == 30 and extra["sentence_source"].endswith("dev.conllu.gz")
    assert len(figures) == 2 * 3 and all(0.0 <= v <= 100.0 for v in figures.values())
    texts, trees, _ = contextual.held_out_trees("en", 30)
    word_stage = transforms.parse("syntax:fr", model.tokenizer.layout())
    reordered = [word_stage.apply_text(t, seed=0, example_id=i, sentence=tree)
                 for i, (t, tree) in enumerate(zip(texts, trees, strict=True))]  # fmt: skip
    assert all(sorted(a.split()) == sorted(b.split()) for a, b in zip(texts, reordered, strict=True))
    assert sum(a != b for a, b in zip(texts, reordered, strict=True)) >= 10  # French order moves words


def test_linear_cka_is_invariant_to_rotation_and_scale_and_low_for_unrelated_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 16))
    q, _ = np.linalg.qr(rng.normal(size=(16, 16)))
    assert contextual.linear_cka(x, 3.0 * x @ q + 5.0) == pytest.approx(1.0)
    assert contextual.linear_cka(x, rng.normal(size=(300, 24))) < 0.15
    # Layer 0: the same vectors, scaled (cosine retrieval is exact); layer 1: unrelated vectors.
    figures = contextual.layer_figures(np.stack([x, x], 1), np.stack([2.0 * x, rng.normal(size=(300, 16))], 1))
    assert figures["contextual_cka_l0"] == pytest.approx(100.0) and figures["contextual_cka_l1"] < 15.0
    assert figures["contextual_retrieval_l0"] == 100.0 and figures["contextual_retrieval_l1"] < 5.0


def test_align_refuses_a_model_without_a_transliterated_copy(translit_run, data_dir, tmp_path):
    config = get_config(CONFIGS / "align.py", "pretrained=" + str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="is not a directory"):
        runner.run(config, tmp_path / "out")
    with pytest.raises(ConfigError, match="unknown config argument 'pretrainde'"):
        get_config(CONFIGS / "align.py", "pretrainde=x")


def protocol_rows(transform: str, bz: float, bs: float, task: str = "nli", metric: str = "accuracy"):
    common = dict(model=f"bilingual-en-{transform}", task=task, lang="en", eval_transform=transform,
                  metric=metric, n_examples=100, train_lang="en")  # fmt: skip
    return [
        results.ResultRow(train_transform="none", setting="BZ", value=bz, **common),
        results.ResultRow(train_transform=transform, setting="BS", value=bs, **common),
    ]


def align_row(transform: str, value: float, metric: str = "align_nn_identity") -> results.ResultRow:
    return results.ResultRow(model=f"en_{transform}", task="align", lang="en", train_transform="none",
                             eval_transform=transform, setting="", metric=metric, value=value, n_examples=900,
                             split="valid")  # fmt: skip


def test_correlate_pairs_alignment_with_delta_bz_bs(tmp_path):
    from xlt_jax import align as align_binary

    grid = {"translit": (90.0, 70.0, 71.0), "translit+inv": (43.0, 60.0, 70.0),
            "translit+perm": (11.8, 40.0, 69.0), "translit+syntax:hi": (57.3, 66.0, 70.0)}  # fmt: skip
    rows = [r for t, (_, bz, bs) in grid.items() for r in protocol_rows(t, bz, bs)]
    rows += [align_row(t, 1.0) for t in grid]  # superseded: the row written last wins
    rows += [align_row(t, a) for t, (a, _, _) in grid.items()]
    rows += [align_row("translit", 3.0, metric="align_nn_procrustes")]
    rows += protocol_rows("translit", 10.0, 20.0, task="pos", metric="token_accuracy")  # another task
    rows += protocol_rows("inv", 50.0, 70.0)[:1] + [align_row("inv", 99.0)]  # no BS row: not a point
    first, second = tmp_path / "a", tmp_path / "b"
    results.append_rows(first, rows[:5])
    results.append_rows(second, rows[5:])
    summary = align_binary.correlate_main([str(results.results_path(first)), str(results.results_path(second)),
                                           "--task", "nli", "--out", str(tmp_path / "out")])  # fmt: skip
    alignments = [a for a, _, _ in grid.values()]
    deltas = [bz - bs for _, bz, bs in grid.values()]
    want = scipy_spearman(alignments, deltas)
    assert summary["n"] == 4 and summary["metric"] == "accuracy"
    assert summary["spearman"] == pytest.approx(want) and summary["spearman"] == pytest.approx(1.0)
    table = (tmp_path / "out" / "correlation_nli.md").read_text()
    assert "| en | translit+inv | bilingual-en-translit+inv | – | 43.00 | 60.00 | 70.00 | -10.00 | 1 |" in table
    assert (tmp_path / "out" / "correlation_nli.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit, match="a rank correlation needs at least 3"):
        align_binary.correlate_main([str(results.results_path(second)), "--task", "nli"])  # one point
    with pytest.raises(SystemExit, match="no ner rows with both BZ and BS"):
        align_binary.correlate_main([str(results.results_path(second)), "--task", "ner"])


def test_correlate_takes_the_gw_distance_as_a_distance(tmp_path):
    from xlt_jax import align as align_binary

    grid = {"translit": (0.012, 70.0, 71.0), "translit+inv": (0.031, 60.0, 70.0), "translit+perm": (0.045, 40.0, 69.0)}
    rows = [r for t, (_, bz, bs) in grid.items() for r in protocol_rows(t, bz, bs)]
    rows += [align_row(t, g, metric="gw_distance") for t, (g, _, _) in grid.items()]
    results.append_rows(tmp_path, rows)
    summary = align_binary.correlate_main([str(results.results_path(tmp_path)), "--task", "nli",
                                           "--alignment", "gw_distance", "--out", str(tmp_path / "out")])  # fmt: skip
    assert summary["spearman"] == pytest.approx(-1.0)  # more isomorphic (smaller GW), smaller loss of transfer
    table = (tmp_path / "out" / "correlation_nli.md").read_text()
    assert "| en | translit+inv | bilingual-en-translit+inv | – | 0.0310 | 60.00 | 70.00 | -10.00 | 1 |" in table


def test_correlate_keeps_models_of_one_language_and_transform_apart(tmp_path):
    """The paper's Table 7: transliteration models of English (parallel, non-parallel same-domain and
    different-domain corpora, and a second pretraining run of the parallel recipe) are one point each, with
    its own alignment and its own Δ(BZ−BS)."""
    from xlt_jax import align as align_binary

    grid = [  # (model, corpus, transform, alignment, Δ(BZ−BS)) as in Table 7
        ("bi-en-translit", "parallel", "translit", 90.0, -2.1),
        ("bi-en-translit-run2", "parallel", "translit", 86.0, -2.6),
        ("bi-en-translit", "nonparallel-same", "translit", 43.0, -3.8),
        ("bi-en-translit-web", "nonparallel-diff", "translit", 11.8, -5.7),
        ("bi-en-translit+syntax", "", "translit+syntax:fr", 57.3, -5.6),
        ("bi-en-translit+inv", "", "translit+inv", 0.16, -19.2),
        ("bi-en-translit+perm", "", "translit+perm", 0.01, -27.7),
    ]
    rows = []
    for model, corpus, transform, value, delta in grid:
        common = dict(model=model, task="nli", lang="en", eval_transform=transform, metric="accuracy",
                      n_examples=2490, train_lang="en", corpus=corpus)  # fmt: skip
        for seed, bs in ((1, 76.2), (2, 75.4)):  # BZ = BS + Δ on each fine-tuning seed
            rows.append(results.ResultRow(train_transform="none", setting="BZ", value=bs + delta, seed=seed, **common))
            rows.append(results.ResultRow(train_transform=transform, setting="BS", value=bs, seed=seed, **common))
        rows.append(results.ResultRow(model=model, task="align", lang="en", train_transform="none",
                                      eval_transform=transform, setting="", metric="align_nn_identity", value=value,
                                      n_examples=900, split="valid", corpus=corpus))  # fmt: skip
    # A seed only BZ of the parallel model has: a paired Δ leaves it out.
    rows.append(dataclasses.replace(rows[0], seed=3, value=60.0))
    # A model without an align row never borrows the alignment of another model of its language.
    web2 = dict(model="bi-en-translit-web2", corpus="nonparallel-diff")
    rows += [dataclasses.replace(r, **web2) for r in rows[:2]]  # its BZ and BS of seed 1
    results.append_rows(tmp_path, rows)
    summary = align_binary.correlate_main([str(results.results_path(tmp_path)), "--task", "nli",
                                           "--out", str(tmp_path / "out")])  # fmt: skip
    assert summary["n"] == len(grid)
    assert summary["spearman"] == pytest.approx(scipy_spearman([g[3] for g in grid], [g[4] for g in grid]))
    table = (tmp_path / "out" / "correlation_nli.md").read_text().splitlines()
    points = {}
    for line in table[table.index("|---|---|---|---|---|---|---|---|---|") + 1:]:
        _, transform, model, corpus, alignment, _, _, delta, seeds = (c.strip() for c in line.strip("|").split("|"))
        points[(model, corpus)] = (transform, float(alignment), float(delta), int(seeds))
    assert points == {(model, corpus or "–"): (transform, pytest.approx(value, abs=0.005),
                                               pytest.approx(delta, abs=0.005), 2)
                      for model, corpus, transform, value, delta in grid}  # fmt: skip


def scipy_spearman(x, y) -> float:
    import scipy.stats

    return float(scipy.stats.spearmanr(x, y)[0])


# -- CSLS --------------------------------------------------------------------------------------------------------


def hub_case(n: int = 500, d: int = 64, offset: float = 8.0, noise: float = 1.5, seed: int = 0):
    """Anisotropic clouds (every vector shares one strong direction, as real embeddings do): targets are noisy
    copies of the sources, plus one extra candidate at the centroid of the targets. The centroid is nearer to
    most sources than their own noisy copy is, so it is every source's nearest neighbour: a hub."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x[:, 0] += offset
    y = x + noise * rng.normal(size=(n, d))
    return alignment.unit_rows(x), alignment.unit_rows(np.vstack([y, y.mean(0, keepdims=True)]))


def test_csls_retrieves_past_a_hub_that_captures_plain_nearest_neighbour_search():
    sources, candidates = hub_case()
    gold = np.arange(len(sources))
    hub = len(candidates) - 1
    assert np.mean(alignment.nearest(sources, candidates) == hub) > 0.5  # the hub takes most queries
    assert alignment.nn_accuracy(sources, candidates, gold) < 45.0
    assert alignment.csls_accuracy(sources, candidates, gold, sources) > 90.0
    assert np.mean(alignment.csls_nearest(sources, candidates, sources) == hub) < 0.1


def test_csls_is_conneau_et_al_formula():
    rng = np.random.default_rng(1)
    queries, candidates, sources = (alignment.unit_rows(rng.normal(size=(n, 8))) for n in (30, 50, 70))
    k = 4
    cosine = queries @ candidates.T
    r_target = np.sort(cosine, axis=1)[:, -k:].mean(1)  # each query's k nearest candidates
    r_source = np.sort(candidates @ sources.T, axis=1)[:, -k:].mean(1)  # each candidate's k nearest sources
    want = np.argmax(2 * cosine - r_target[:, None] - r_source[None, :], axis=1)
    np.testing.assert_array_equal(alignment.csls_nearest(queries, candidates, sources, k=k), want)
    assert not np.array_equal(want, np.argmax(cosine, axis=1))  # the penalty changes some choices here


def test_alignment_with_csls_recovers_a_rotation():
    e1, e2, _ = rotated_pair(noise=0.05)
    figures = alignment.align_embeddings(e1, e2, alignment.split_pairs(len(e1), 0.2, 0.7, seed=1), csls=True)
    assert figures["align_csls_procrustes"] == 100.0 and figures["align_csls_identity"] < 5.0


# -- Gromov-Wasserstein -------------------------------------------------------------------------------------------


def cloud(n: int = 80, d: int = 16, seed: int = 0):
    """Points with a common offset (anisotropic, like embeddings), a random rotation and a shuffled order."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return rng.normal(size=(n, d)) + 1.0, q, rng.permutation(n), rng


def test_gw_distance_is_zero_for_an_isometric_copy_in_any_order():
    x, q, order, _ = cloud()
    figures = gw.gw_figures(x, 3.0 * (x @ q)[order])  # rotated, rescaled, rows shuffled
    assert figures[gw.METRIC] < 1e-9 and figures["gw_independent"] > 0.03


def test_gw_distance_of_a_near_isometric_copy_is_its_true_matching_cost():
    """Noise: the conditional-gradient solver stays near the independent coupling; the entropic solver finds the
    true matching, whose cost is computed here with the known correspondence."""
    x, q, order, rng = cloud()
    noisy = x @ q + 0.3 * rng.normal(size=x.shape)
    figures = gw.gw_figures(x, noisy[order])
    assert figures[gw.METRIC] == pytest.approx(matching_cost(x, noisy), rel=0.05)
    assert figures["gw_conditional_gradient"] > 3 * figures[gw.METRIC]


def matching_cost(x: np.ndarray, y: np.ndarray) -> float:
    """GW cost of the coupling that pairs row i with row i (an upper bound of the GW distance)."""
    return float(np.mean((gw.cosine_distances(x) - gw.cosine_distances(y)) ** 2))


def test_gw_distance_is_clearly_positive_for_non_isometric_clouds():
    x, q, order, rng = cloud()
    near = matching_cost(x, x @ q + 0.3 * rng.normal(size=x.shape))  # what a noisy copy costs at most
    squashed = gw.gw_figures(x, np.tanh(3.0 * x @ q)[order])[gw.METRIC]  # same points, bent non-linearly
    unrelated = gw.gw_figures(x, rng.normal(size=x.shape) + 1.0)[gw.METRIC]  # same distribution, other points
    assert min(squashed, unrelated) > 4 * near > 0.01
    with pytest.raises(ConfigError, match="zero embedding row"):
        gw.gw_figures(x, np.zeros_like(x))


def test_most_frequent_takes_the_top_counts_and_only_seen_ids():
    np.testing.assert_array_equal(gw.most_frequent(np.array([0, 5, 2, 5, 0, 1]), 3), [1, 3, 2])
    np.testing.assert_array_equal(gw.most_frequent(np.array([0, 5, 0, 1]), 10), [1, 3])


# -- bilingual lexicon induction ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def en_fr(data_dir):
    """A BPE tokenizer of real English and French text (UD train sentences) and the real MUSE en-fr pairs whose
    words are single pieces."""
    from xlt_jax.data import corpora
    from xlt_jax.data.readers.muse import read_muse
    from xlt_jax.data.tokenizer import train_tokenizer

    treebanks = {"en": "ud/en_ewt/train.conllu.gz", "fr": "ud/fr_sequoia/train.conllu.gz"}
    texts = {lang: corpora.read_source(f"conllu:{path}", limit=3000) for lang, path in treebanks.items()}
    tokenizer = train_tokenizer(texts, 3000, None, seed=0, hard_vocab_limit=False)
    pairs = lexicon.token_pairs(read_muse(lexicon.dictionary_path("en", "fr")), tokenizer, tokenizer)
    return tokenizer, pairs


def one_to_one(pairs):
    """Pairs whose source and target ids appear once each (file order), so a copy can give each its own row."""
    seen_src, seen_tgt, kept = set(), set(), []
    for s, t in pairs:
        if s not in seen_src and t not in seen_tgt:
            seen_src.add(s), seen_tgt.add(t), kept.append((s, t))
    return kept


def test_lexicon_split_holds_out_whole_source_words_with_a_seed(en_fr):
    _, pairs = en_fr
    assert len(pairs) > 400 and all(isinstance(i, int) for pair in pairs[:5] for i in pair)
    split = lexicon.split_lexicon(pairs, 0.25, seed=0)
    sources = {s for s, _ in pairs}
    assert len(split.test_sources) == round(0.25 * len(sources))
    assert not set(split.train[:, 0].tolist()) & set(split.test_sources.tolist())
    assert set(split.train[:, 0].tolist()) | set(split.test_sources.tolist()) == sources
    for source, gold in zip(split.test_sources.tolist(), split.test_gold, strict=True):
        assert gold == {t for s, t in pairs if s == source}  # every translation of a held-out word counts
    np.testing.assert_array_equal(split.test_sources, lexicon.split_lexicon(pairs, 0.25, seed=0).test_sources)
    assert not np.array_equal(split.test_sources, lexicon.split_lexicon(pairs, 0.25, seed=1).test_sources)
    with pytest.raises(ConfigError, match="test_fraction"):
        lexicon.split_lexicon(pairs, 1.0, seed=0)


def test_procrustes_induces_the_lexicon_of_a_rotated_copy_and_identity_is_chance(en_fr):
    """Two models' tables: the target rows of real dictionary words are the source rows rotated."""
    tokenizer, pairs = en_fr
    pairs = one_to_one(pairs)
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(32, 32)))
    src_table = rng.normal(size=(tokenizer.base_size, 32))
    tgt_table = rng.normal(size=(tokenizer.base_size, 32))
    ids = np.array(pairs)
    tgt_table[ids[:, 1]] = src_table[ids[:, 0]] @ q
    split = lexicon.split_lexicon(pairs, 0.25, seed=0)
    candidates = lexicon.word_candidates(tokenizer)
    assert len(candidates) > 1000 and set(ids[:, 1].tolist()) <= set(candidates.tolist())
    figures = lexicon.bli_figures(src_table, tgt_table, split, candidates, csls=True)
    assert figures["bli_p1_nn_procrustes"] == figures["bli_p1_csls_procrustes"] == 100.0
    assert figures["bli_p1_nn_identity"] < 5.0 and figures["bli_p1_csls_identity"] < 5.0


def test_one_shared_table_finds_words_spelled_alike_without_a_map(en_fr):
    """A bilingual model's one table: with no map a word retrieves its own row, which is a hit exactly when the
    word is its own translation (`paris`, `message`, digits)."""
    tokenizer, pairs = en_fr
    table = np.random.default_rng(0).normal(size=(tokenizer.base_size, 32))
    split = lexicon.split_lexicon(pairs, 0.25, seed=0)
    candidates = lexicon.word_candidates(tokenizer)
    figures = lexicon.bli_figures(table, table, split, candidates)
    assert figures["bli_p1_nn_identity"] == lexicon.own_translation_share(split) > 30.0
    apart = lexicon.spelled_apart(split)  # the words spelled differently: nothing for free
    assert 0 < len(apart.test_sources) == round((100 - figures["bli_p1_nn_identity"]) * len(split.test_sources) / 100)
    assert lexicon.bli_figures(table, table, apart, candidates)["bli_p1_nn_identity"] == 0.0


def test_missing_dictionary_is_named(data_dir):
    with pytest.raises(ConfigError, match=r"no MUSE dictionary en-de .*available: .*en-fr"):
        lexicon.dictionary_path("en", "de")


def test_only_single_piece_words_count_and_any_translation_is_a_hit(en_fr):
    tokenizer, _ = en_fr
    assert [len(tokenizer.encode(w)) for w in ("the", "cats", "electroencephalography")] == [1, 2, 8]
    assert lexicon.single_piece_ids(["the", "cats", "electroencephalography", "the"], tokenizer) == {
        "the": tokenizer.encode("the")[0]}
    gold = (frozenset({1, 3}), frozenset({7}), frozenset({2}))
    assert lexicon.precision_at_1(np.array([3, 7, 5]), gold) == pytest.approx(200 / 3)


@pytest.mark.slow  # a second smoke pretraining run (~30 s here): `make test-slow`
def test_align_binary_on_a_natural_pair_writes_lexicon_and_gw_rows(data_dir, compile_cache, pretrain_smoke, tmp_path):
    run = pretrain_smoke("bilingual.py", "lang=en,lang2=fr,smoke", steps=4)
    rows = runner.run(get_config(CONFIGS / "align.py", f"pretrained={run},csls,gw=50,freq_sentences=300"), tmp_path)
    metrics = ["bli_p1_nn_identity", "bli_p1_csls_identity", "bli_p1_nn_procrustes", "bli_p1_csls_procrustes"]
    assert [r.metric for r in rows] == [*metrics, "gw_distance"]
    assert results.read_rows(results.results_path(tmp_path)) == rows
    for row in rows:
        assert (row.task, row.train_lang, row.lang, row.eval_transform) == ("align", "en", "fr", "none")
    bli = rows[0]
    assert bli.split == "test" and bli.extra["shared_table"] and "muse_full/en-fr.dict" in bli.extra["dictionary"]
    # Without a map, one shared table finds exactly the words spelled alike in both languages.
    assert bli.value == pytest.approx(bli.extra["own_translation_share"]) and bli.value > 0
    assert bli.extra["value_spelled_apart"] == 0.0 and bli.extra["n_spelled_apart"] > 0
    assert rows[-1].split == "frequent_tokens" and rows[-1].value > 0
    reverse = runner.run(get_config(CONFIGS / "align.py", f"pretrained={run},gw=0,pair=fr-en"), tmp_path)
    assert [(r.train_lang, r.lang) for r in reverse] == [("fr", "en")] * 2
    assert "muse_full/fr-en.dict" in reverse[0].extra["dictionary"]
