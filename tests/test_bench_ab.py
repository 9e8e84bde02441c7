"""`python -m xlt_jax.bench ab`: variants parse to config overrides, reach the model that is timed, and a
wrong key is refused by name."""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from xlt_jax.bench import ab, peer
from xlt_jax.models import prediction_tiers


def test_variants_parse_to_typed_overrides():
    assert ab.parse_variant("base") == {}
    assert ab.parse_variant("scan_layers=False, dropout=0") == {"scan_layers": False, "dropout": 0}
    assert ab.parse_variant("dtype=bfloat16,mlm_group_size=4") == {"dtype": "bfloat16", "mlm_group_size": 4}
    with pytest.raises(argparse.ArgumentTypeError, match="'dropout' is not key=value"):
        ab.parse_variant("scan_layers=False,dropout")


def test_overrides_reach_the_timed_model_and_its_batch():
    step = peer.xlt_step("small_translit_128x64", {"scan_layers": False, "mlm_group_size": 4}, 16)
    assert set(step.state.params["encoder"]["blocks"]) == {0, 1}  # unrolled: one entry per layer
    assert step.batch["mlm_positions"].shape == (128 // 4, 72)  # rows per group of 4 sequences of 64
    assert (step.mlm_group_size, step.gathered_rows) == (4, 32 * 72)  # what bench peer and profile report
    # Of them the head projects the tier that covers the fullest group (model.prediction_tiers, 8 by default).
    weights = step.batch["mlm_weights"]
    used = int(max(np.flatnonzero(row).max() + 1 for row in weights))
    assert step.projected_rows == 32 * min(m for m in prediction_tiers.tiers(72, 8) if m >= used) < 32 * 72
    assert prediction_tiers.projected_rows(weights, 1) == 32 * 72  # prediction_tiers=1: the whole budget


def test_group_sizes_shape_the_batch():
    config, _, per_sequence = peer.xlt_setup("small_translit_128x64", {}, 0)
    assert config.scan_layers and per_sequence["mlm_positions"].shape == (128, 24)
    by_default = peer.xlt_setup("small_translit_128x64", {}, 16)[2]  # --mlm-group-size, as in `bench peer`
    assert by_default["mlm_positions"].shape == (128 // 16, 208)
    # A size that does not divide the batch groups by their greatest common divisor (roberta8's 8 with 16: 8).
    assert peer.xlt_setup("small_translit_128x64", {}, 48)[2]["mlm_positions"].shape == (128 // 16, 208)
    assert peer.xlt_setup("roberta8_8x128", {}, 16)[2]["mlm_positions"].shape == (1, 208)


def test_an_unknown_model_key_is_refused_by_name():
    with pytest.raises(Exception, match="scan_layerz"):
        peer.xlt_step("small_translit_128x64", {"scan_layerz": False}, 16)
