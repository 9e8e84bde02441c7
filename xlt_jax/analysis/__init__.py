"""Analyses of pretrained models: how well the original and derived languages are aligned."""
