"""Every registered architecture exported as one step graph: proven over 60 s, then run by plain onnxruntime.

Coverage rule (HF optimum's "every registered model has a test model"): a test module in
tests/zoo declares ``COVERED_ARCHITECTURES`` and parametrizes its parity test over exactly
that tuple with ``@pytest.mark.parametrize("arch", COVERED_ARCHITECTURES)``.
:func:`test_every_registered_architecture_has_a_parity_test` collects those parametrized
cases from all such modules and fails when a registered architecture is in none of them.
Architectures exported as several graphs (transducers) declare their own module and tuple.
"""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from stateport.export import export_model
from stateport.verify.signals import synthetic_features
from stateport.zoo import architectures, get_architecture

# Architectures whose export is one step graph; parity-tested below.
COVERED_ARCHITECTURES = ("dscnn-kws", "lstm-ctc", "quartznet")

PARITY_SECONDS = 60.0
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def tiny_exports(tmp_path_factory):
    """``arch -> (path, ExportResult)``: each tiny model exported (and proven) once per module."""
    cache = {}

    def get(arch):
        if arch not in cache:
            path = tmp_path_factory.mktemp("zoo") / f"{arch}-tiny.onnx"
            cache[arch] = (str(path), export_model(path, arch=arch, size="tiny", seconds=PARITY_SECONDS,
                                                   tolerance=TOLERANCE))
        return cache[arch]

    return get


@pytest.mark.parametrize("arch", COVERED_ARCHITECTURES)
def test_tiny_export_passes_the_parity_proof(arch, tiny_exports):
    """export_model raises ParityError on failure; here the figures are checked too."""
    path, result = tiny_exports(arch)
    report = result.report
    assert report.passed, report.to_text()
    assert report.seconds >= PARITY_SECONDS and report.tolerance == TOLERANCE
    names = [c.name for c in report.checks]
    for chunking in ("1-frame", "nominal", "ragged"):
        assert f"onnxruntime stream [{chunking}] vs torch offline" in names
    assert report.max_abs_diff <= TOLERANCE
    card = result.card
    assert card.states, "a streaming architecture carries state"
    assert card.certificate["passed"] and card.certificate["max_abs_diff"] <= TOLERANCE
    assert card.provenance.architecture == arch and card.provenance.size == "tiny"


@pytest.mark.parametrize("arch", COVERED_ARCHITECTURES)
def test_onnxruntime_alone_streams_ragged_chunks(arch, tiny_exports):
    """A client with only onnxruntime and the card: the offline call (input only) equals ragged
    streaming with every state output fed back into its input."""
    path, _ = tiny_exports(arch)
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    card = json.loads(sess.get_modelmeta().custom_metadata_map["stateport"])
    (feature_port,) = [p for p in card["ports"] if p["role"] == "input"]
    states = [p for p in card["ports"] if p["role"] == "state"]
    out_name = card["output"]["port"]
    x = synthetic_features(2000, feature_port["shape"][-1], seed=11)  # 20 s

    (offline,) = sess.run([out_name], {feature_port["name"]: x})

    state = {s["name"]: np.full([1 if d == "batch" else d for d in s["shape"]], s["init"], np.float32)
             for s in states}
    output_names = [o.name for o in sess.get_outputs()]
    rng = np.random.default_rng(5)
    outs, a = [], 0
    while a < x.shape[1]:
        n = int(rng.integers(1, 45))
        named = dict(zip(output_names, sess.run(None, {feature_port["name"]: x[:, a:a + n], **state})))
        outs.append(named[out_name])
        state = {s["name"]: named[s["output"]] for s in states}
        a += n
    streamed = np.concatenate(outs, axis=1)
    assert offline.shape == (1, 2000, len(card["output"]["vocabulary"]))
    assert float(np.abs(streamed - offline).max()) <= TOLERANCE
    # The untrained output must move with the input far more than the tolerance, or this
    # comparison could not tell a lost or misrouted state from a right one.
    assert float(offline.std(axis=1).max()) > 100 * TOLERANCE


def _parametrized_archs(module) -> set:
    """Architecture names the module's tests are parametrized over (``parametrize("arch", ...)``)."""
    found = set()
    for obj in vars(module).values():
        for mark in getattr(obj, "pytestmark", []):
            if mark.name == "parametrize" and mark.args[0] == "arch":
                found.update(v.values[0] if hasattr(v, "values") else v for v in mark.args[1])
    return found


def _zoo_test_modules():
    here = Path(__file__)
    for path in sorted(here.parent.glob("test_*.py")):
        if path == here:
            yield path.name, sys.modules[__name__]
            continue
        spec = importlib.util.spec_from_file_location(f"_zoo_coverage_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield path.name, module


def test_every_registered_architecture_has_a_parity_test():
    covered = {}
    for filename, module in _zoo_test_modules():
        declared = getattr(module, "COVERED_ARCHITECTURES", None)
        if declared is None:
            continue
        parametrized = _parametrized_archs(module)
        assert set(declared) <= parametrized, (
            f"{filename} declares COVERED_ARCHITECTURES {sorted(declared)} but its tests are parametrized over "
            f"{sorted(parametrized)}")
        for name in declared:
            assert name not in covered, f"{name} is covered twice ({covered[name]} and {filename})"
            get_architecture(name)  # a stale name (no such architecture) raises here
            covered[name] = filename
    registered = {a.name for a in architectures()}
    missing = sorted(registered - set(covered))
    assert not missing, (f"registered architectures without a parity test: {missing}; add each to a "
                         "COVERED_ARCHITECTURES tuple in tests/zoo (see this module's docstring)")


@pytest.mark.parametrize("arch", ["quartznet", "dscnn-kws"])
def test_conv_state_is_one_left_padding_buffer_per_time_context_layer(arch):
    """Conv architectures: states are found from the layers, batch first, sized by kernel and dilation."""
    model = get_architecture(arch).build("tiny")
    decls = model.state_decls()
    context = [layer.context_frames for _, layer in model.streaming_layers()]
    assert len(decls) == len(context) and all(d.name.endswith("_buf") for d in decls)
    assert [d.batch_axis for d in decls] == [0] * len(decls)
    assert [d.shape[2] for d in decls] == context  # [B, C, (k - 1) * d, ...]
    assert model.receptive_field_frames == 1 + sum(context)


def test_dscnn_default_window_is_one_second():
    model = get_architecture("dscnn-kws").build("default")
    assert model.receptive_field_frames == 100  # 100 frames of 10 ms
    assert model.streaming.output_kind == "classifier" and model.streaming.blank_id is None
    assert model.streaming.vocabulary[:3] == ["_background_", "_unknown_", "zero"]


@pytest.mark.parametrize("arch, max_params", [("quartznet", 2_000_000), ("dscnn-kws", 100_000)])
def test_default_sizes_stay_edge_sized(arch, max_params):
    model = get_architecture(arch).build("default")
    assert 0 < sum(p.numel() for p in model.parameters()) < max_params
