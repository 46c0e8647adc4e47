"""Helpers of the backend tests: the two small models every backend is proven on, and skip markers."""

import pytest

import toy_models
from stateport.export.backends import get_backend
from stateport.export.sources import build_model

PARITY_SECONDS = 5.0  # each proof steps 5 s of features; the conversions dominate the run time


def requires(backend: str):
    """Skip marker for a backend whose extra is not installed (CI installs them all)."""
    spec = get_backend(backend)
    return pytest.mark.skipif(not spec.available("export") or not spec.available("run"),
                              reason=f"{backend} backend not installed ({spec.install_hint})")


def lstm_ctc_tiny():
    """``lstm-ctc`` at size tiny: (model, provenance), rebuildable from the card."""
    return build_model(arch="lstm-ctc", size="tiny")


def causal_conv():
    """Two dilated causal convs (two left-padding buffers), from tests/toy_models.py."""
    return toy_models.build("causal-conv"), {"architecture": "toy-causal-conv"}
