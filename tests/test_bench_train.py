"""`python -m xlt_jax.bench train`: its layer variants ("both" once ran one unrolled variant labelled "both")."""

from __future__ import annotations

import argparse

import pytest

from xlt_jax.bench.train import layer_variants


@pytest.mark.parametrize(
    "spec, want",
    [("both", ["scan", "unrolled"]), ("scan,unrolled", ["scan", "unrolled"]), ("scan", ["scan"]),
     ("unrolled", ["unrolled"])],
)
def test_layer_variants(spec, want):
    assert layer_variants(spec) == want


@pytest.mark.parametrize("spec", ["", "scanned", "scan,both"])
def test_unknown_layer_variants_are_refused(spec):
    with pytest.raises(argparse.ArgumentTypeError, match="scan, unrolled, both"):
        layer_variants(spec)
