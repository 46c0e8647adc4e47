"""The export job and the verify job: one path each, for every backend, single- and multi-graph models.

Export: build -> convert (the backend from the registry, ONNX included) -> save to a temporary
beside ``out`` -> prove parity there -> write the certificate -> move into place
(:mod:`stateport.atomic`). A multi-graph model (a transducer's encoder, predictor and joiner) is
the same job per graph, into a temporary folder that replaces ``out`` as a whole. A failed proof
keeps its file beside ``out`` (``m.failed.onnx``, ``DIR.failed``) and raises ParityError; nothing
is written at ``out``. ``verify=False`` writes a card that says no proof ran.

Verify: snapshot the file, rebuild its reference from the card, prove, and (on request) write the
new certificate into the snapshot and move it into place.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..atomic import atomic_output, check_output_folder, failed_path
from ..errors import InvalidInputError, ModelFileError, OutputPathError, ParityError
from ..nn.audio_in import AudioInput
from ..nn.protocol import MultiGraphModule
from ..spec import TIME_DIM, ModelCard
from ..verify import (DEFAULT_SECONDS, DEFAULT_TOLERANCE, ParityReport, check_proof_options, parity_error,
                      prove_parity, prove_self, unproven_certificate)
from ..verify.report import merge_reports
from ..verify.runners import TorchRunner, one_torch_thread
from .backends.common import ExportSettings, contiguous_tensors
from .backends.registry import BACKENDS, Backend, backend_for_path, get_backend
from .sources import build_model, measured_tail, rebuild_reference

# A quantised artifact is proven against the *float* torch model, at this tolerance unless the caller
# gives one. Measured over 60 s (TFLite dynamic_wi8_afp32, nominal chunks), max |diff| of logits / h / c:
# lstm-ctc tiny (random weights) 5.2e-3 / 1.9e-2 / 0.13, lstm-ctc default 1.6e-3 / 4.8e-3 / 1.3e-2, argmax
# agreement >= 99.2%. The LSTM cell state c is unbounded and accumulates the int8 weight error, so it
# sets the bound; the ONNX dynamic-int8 recipe (stateport.quantize) holds its streaming proof to 0.5.
QUANTIZED_TOLERANCE = 0.25
NO_VERIFY_REASON = "exported with --no-verify: no parity proof ran"


def default_tolerance(quantized: str | None) -> float:
    """The proof's tolerance unless the caller gives one: 1e-4, or 0.25 for a quantised export."""
    return QUANTIZED_TOLERANCE if quantized else DEFAULT_TOLERANCE


@dataclass
class ExportResult:
    """What one export wrote: ``path``, its ``card`` and its parity ``report`` (None with ``verify=False``).

    A multi-graph export is a folder: ``graphs`` maps each graph name to its own result (file,
    card, report), ``card`` is None and ``report`` merges the graphs' reports (check names
    prefixed with the graph's). ``notes`` say what the backend changed (e.g. static shapes).
    """

    path: str
    card: ModelCard | None
    report: ParityReport | None
    backend: str = "onnx"
    notes: list = field(default_factory=list)
    graphs: dict = field(default_factory=dict)

    @property
    def cards(self) -> dict:
        """Graph name -> card (a single-graph export: its one card under the card's name)."""
        if self.graphs:
            return {name: r.card for name, r in self.graphs.items()}
        return {self.card.name: self.card}

    @property
    def passed(self) -> bool | None:
        """The proof passed (every graph's); None when it did not run."""
        return None if self.report is None else self.report.passed

    def to_dict(self) -> dict:
        d = {"path": self.path, "backend": self.backend, "notes": list(self.notes),
             "parity": self.report.to_dict() if self.report else None}
        if self.graphs:
            d["graphs"] = {name: r.to_dict() for name, r in self.graphs.items()}
        else:
            d["card"] = self.card.to_dict()
        return d

    def _moved_to(self, path: str) -> "ExportResult":
        """The same result after its file (or folder) moved to ``path``."""
        graphs = {name: r._moved_to(os.path.join(path, os.path.basename(r.path))) for name, r in self.graphs.items()}
        return dataclasses.replace(self, path=path, graphs=graphs)


def export_model(out: str | os.PathLike, *, arch: str | None = None, size: str | None = None,
                 module: str | None = None, checkpoint: str | None = None, chunk_frames: int | None = None,
                 static: bool = False, verify: bool = True, seconds: float = DEFAULT_SECONDS,
                 tolerance: float | None = None, exporter: str = "torchscript", seed: int = 0,
                 backend: str = "onnx", quantize: str | None = None,
                 backend_options: dict | None = None, audio_input: bool = False,
                 tail_from: str | os.PathLike | None = None) -> ExportResult:
    """``stateport export``: the same argument names as the CLI; returns an :class:`ExportResult`.

    Builds the torch model (``arch`` [+ ``size``] or ``module`` ``FILE.py:OBJ``, + ``checkpoint``)
    and runs :func:`export_torch_model`. ``out`` is a file of the backend's format, or a folder for
    a multi-graph architecture (``rnnt``). ``backend`` picks the format (``onnx``, ``tflite``,
    ``coreml``, ``executorch``, ``openvino``; see :mod:`stateport.export.backends`); ``quantize``
    (``"dynamic-int8"``, tflite) and ``backend_options`` (e.g. ``{"state": "coreml"}``) go to it.
    ``tolerance`` None: 1e-4, or 0.25 for a quantised export (proven against the float model).
    ``audio_input``: put the card's frontend inside the graph (:mod:`stateport.nn.audio_in`): the
    file takes PCM samples, and its proof compares it with Kaldi's features of the same audio.
    The card carries the weights' measured end-of-input tail when a stateport file of the same
    checkpoint has one: ``tail_from`` (a path), by default the built-in model for its checkpoint
    (:func:`stateport.export.sources.measured_tail`).
    """
    check_proof_options(seconds, tolerance)
    spec = get_backend(backend)
    _require(spec, verify)
    ExportSettings(static=static, audio_input=audio_input)  # contradictory settings fail before any work
    out = os.fspath(out)
    check_output_folder(out)  # before the model is built: a missing or read-only folder fails at once
    model, provenance = build_model(arch=arch, size=size, module=module, checkpoint=checkpoint, seed=seed)
    return export_torch_model(model, out, provenance=provenance, chunk_frames=chunk_frames, static=static,
                              verify=verify, seconds=seconds, tolerance=tolerance, exporter=exporter, backend=backend,
                              quantize=quantize, backend_options=backend_options, audio_input=audio_input,
                              tail_padding=measured_tail(provenance, tail_from))


def export_torch_model(model, out: str | os.PathLike, *, provenance: dict | None = None, backend: str = "onnx",
                       chunk_frames: int | None = None, static: bool = False, verify: bool = True,
                       seconds: float = DEFAULT_SECONDS, tolerance: float | None = None,
                       exporter: str = "torchscript", quantize: str | None = None,
                       backend_options: dict | None = None, name: str | None = None,
                       audio_input: bool = False, tail_padding: tuple | None = None) -> ExportResult:
    """The export job on a built torch model (a StreamingModule, or a MultiGraphModule written as a folder).

    ``provenance`` is what the card records to rebuild the reference later (``stateport verify``).
    ``audio_input``: export ``AudioInput(model)`` (PCM in; ``model`` takes the features its card's
    frontend computes), unless ``model`` already is one. ``tail_padding``: ``(ms, basis)`` of the
    weights' measured end-of-input tail, for the card.
    Raises ParityError when a proof fails, after keeping the failed file beside ``out``.
    """
    check_proof_options(seconds, tolerance)
    spec = get_backend(backend)
    _require(spec, verify)
    out = os.fspath(out)
    settings = ExportSettings(chunk_frames=chunk_frames, static=static, exporter=exporter, quantize=quantize,
                              options=dict(backend_options or {}), provenance=dict(provenance or {}), name=name,
                              audio_input=audio_input, tail_padding=tail_padding)
    if audio_input and not isinstance(model, AudioInput):
        model = AudioInput(model)  # says why a model cannot take audio (e.g. a multi-graph transducer)
    tolerance = default_tolerance(quantize) if tolerance is None else tolerance
    job = dict(verify=verify, seconds=seconds, tolerance=tolerance)
    layout = spec.impl("export") if spec.layout_of else None  # a runtime's folder layout (sherpa-onnx)
    if layout is None and not isinstance(model, MultiGraphModule):
        if not out.rstrip("/").endswith(spec.suffix):
            raise InvalidInputError(f"--backend {spec.name} writes a {spec.suffix} file; got output path {out!r}")
        with atomic_output(out, directory=spec.directory, companions=spec.companions, suffix=spec.suffix,
                           replaceable=_is_package if spec.directory else None) as target:
            result = _export_graph(model, target.tmp, spec, settings, **job)
            return _finish(target, result, spec)
    graphs = layout.graphs(model) if layout is not None else model.graphs()
    if any(out.rstrip("/").endswith(b.suffix) for b in BACKENDS.values()):
        raise OutputPathError(f"{type(model).__name__} has {len(graphs)} graphs ({', '.join(graphs)}): -o names the "
                              f"folder to write them into, one file each; got {out!r}")
    files = {f"{g}{spec.suffix}" for g in graphs} | set(layout.extra_file_names() if layout is not None else ())
    with atomic_output(out, directory=True, replaceable=lambda p: set(os.listdir(p)) <= files) as target:
        arch = settings.provenance.get("architecture", type(model).__name__)
        results = {}
        for gname, graph in graphs.items():
            takes_audio = any(p.time_dim == TIME_DIM for p in graph.input_specs())
            graph_settings = settings.replace(chunk_frames=settings.chunk_frames if takes_audio else None,
                                              provenance={**settings.provenance, "graph": gname},
                                              name=settings.name or f"{arch}-{gname}")
            results[gname] = _export_graph(graph.eval(), os.path.join(target.tmp, gname + spec.suffix), spec,
                                           graph_settings, **job)
        if layout is not None:
            for fname, text in layout.folder_files({g: r.card for g, r in results.items()}).items():
                with open(os.path.join(target.tmp, fname), "w", encoding="utf-8") as f:
                    f.write(text)
        reports = {g: r.report for g, r in results.items()}
        merged = merge_reports(reports) if verify else None
        notes = list(dict.fromkeys(n for r in results.values() for n in r.notes))
        return _finish(target, ExportResult(target.tmp, None, merged, spec.name, notes, results), spec)


def _export_graph(model, path: str, spec: Backend, settings: ExportSettings, *, verify: bool, seconds: float,
                  tolerance: float) -> ExportResult:
    """Convert one graph, write it to ``path`` (a temporary), prove it there, write the certificate.

    The model's tensors stay contiguous until the last save: a converter's program may hold the
    module's own parameters (torch.export does) and serialize them only when saved."""
    with contiguous_tensors(model):
        return _convert_prove_save(model, path, spec, settings, verify=verify, seconds=seconds, tolerance=tolerance)


def _convert_prove_save(model, path: str, spec: Backend, settings: ExportSettings, *, verify: bool, seconds: float,
                        tolerance: float) -> ExportResult:
    artifact = spec.impl("export").convert(model, settings)
    card = artifact.card
    if not verify:
        card.certificate = unproven_certificate(NO_VERIFY_REASON)
        artifact.save(path, card)
        return ExportResult(path, card, None, spec.name, list(artifact.notes))
    artifact.save(path, card)
    report = prove(model, path, card, spec, seconds=seconds, tolerance=tolerance)
    report.notes.extend(artifact.notes)
    card.certificate = report.certificate()
    artifact.save(path, card)
    return ExportResult(path, card, report, spec.name, list(artifact.notes))


def _finish(target, result: ExportResult, spec: Backend) -> ExportResult:
    """Move a proved (or unproved, with ``verify=False``) result into place; a failed one beside it, then raise."""
    if result.passed is False:
        evidence = target.keep_as(failed_path(target.path, None if result.graphs else spec.suffix))
        reports = {g: r.report for g, r in result.graphs.items()} if result.graphs else result.report
        raise parity_error(target.path, reports, evidence=evidence)
    return result._moved_to(target.commit())


def prove(model, path: str, card: ModelCard, spec: Backend | str, *, seconds: float = DEFAULT_SECONDS,
          tolerance: float = DEFAULT_TOLERANCE, optimization: str | None = None) -> ParityReport:
    """The certification routine: the file at ``path`` (of ``spec``'s format) against the torch ``model``.

    Streaming and offline, every chunking, lock-step, batched (:func:`stateport.verify.prove_parity`);
    a format that cannot run here (Core ML on Linux) gets its ``check_file`` report instead.
    Writes nothing and raises nothing for a failed proof: the report says.
    """
    spec = get_backend(spec) if isinstance(spec, str) else spec
    impl = spec.impl("run")
    if not spec.runs_here:
        return impl.check_file(path, card, tolerance=tolerance)
    with one_torch_thread():
        return prove_parity(TorchRunner(model, card), impl.make_runner(path, card, optimization=optimization), card,
                            seconds=seconds, tolerance=tolerance)


def verify_file(path: str | os.PathLike, *, module: str | None = None, checkpoint: str | None = None,
                reference=None, seconds: float = DEFAULT_SECONDS, tolerance: float | None = None,
                optimization: str | None = None, write_certificate: bool = False) -> ParityReport:
    """``stateport verify``: prove any stateport file again; returns the report, raises ParityError if it fails.

    ``path``: a file of any backend, or the folder of a multi-graph export (every graph in it).
    The torch reference is rebuilt from the card (``module`` / ``checkpoint`` when it was exported
    from them), or given as ``reference``. A quantized ONNX artifact has no float twin computing
    its arithmetic: it is proved streamed against itself offline, at its recipe's tolerance.
    ``tolerance`` None: the file's own (1e-4, 0.25 for a tflite int8 export, the recipe's bound);
    ``optimization`` None: the ONNX Runtime level the certificate was proved at.
    ``write_certificate``: store the new certificate in the file (the proof runs on a copy beside
    it, which then replaces it; a failed proof leaves the file as it was and its copy beside it).
    """
    check_proof_options(seconds, tolerance)
    path = os.fspath(path)
    if os.path.isdir(path) and not any(path.rstrip("/").endswith(b.suffix) for b in BACKENDS.values() if b.directory):
        return _verify_folder(path, module=module, checkpoint=checkpoint, seconds=seconds, tolerance=tolerance,
                              optimization=optimization, write_certificate=write_certificate)
    spec = backend_for_path(path)
    if not os.path.exists(path):
        raise ModelFileError(f"model file {path!r} does not exist")
    _require(spec, True)
    impl = spec.impl("run")
    with _snapshot(path, spec, in_place=write_certificate) as target:
        card = impl.read_card(target.tmp)
        q = card.provenance.quantization or {}
        if spec.name == "onnx" and "stream_tolerance" in q:
            from ..runtime.session import certified_optimization

            report = prove_self(target.tmp, card, label=str(q.get("recipe", "quantized")),
                                level=optimization or certified_optimization(card), seconds=seconds,
                                tolerance=float(q["stream_tolerance"]) if tolerance is None else tolerance)
        else:
            model = reference if reference is not None else rebuild_reference(card, module=module,
                                                                              checkpoint=checkpoint)
            if reference is None and card.provenance.graph is not None:
                # One graph of a multi-graph model (e.g. a transducer's joiner), or of a runtime's
                # layout of the model (sherpa-onnx's): prove that graph.
                layout = BACKENDS.get(card.provenance.backend)
                graphs = (layout.impl("export").graphs(model) if layout is not None and layout.layout_of
                          else model.graphs())
                model = graphs[card.provenance.graph]
            if optimization is None and spec.name == "onnx":
                from ..runtime.session import certified_optimization

                optimization = certified_optimization(card)
            report = prove(model, target.tmp, card, spec, seconds=seconds, optimization=optimization,
                           tolerance=default_tolerance(q.get("recipe")) if tolerance is None else tolerance)
        if write_certificate:
            card.certificate = report.certificate()
            impl.write_card(target.tmp, card)
            if not report.passed:
                raise parity_error(path, report, evidence=target.keep_as(failed_path(path, spec.suffix)))
            target.commit()
    if not report.passed:
        raise parity_error(path, report)
    return report


def _verify_folder(folder: str, **kwargs) -> ParityReport:
    """Every graph file of a multi-graph export folder, one proof each; one merged report."""
    files = sorted(f for f in os.listdir(folder) if any(f.endswith(b.suffix) for b in BACKENDS.values())
                   and not f.startswith("."))
    if not files:
        raise ModelFileError(f"{folder!r} is a folder without model files (expected e.g. the graphs of a "
                             "multi-graph export: encoder.onnx, predictor.onnx, joiner.onnx)")
    reports = {}
    for f in files:
        try:
            reports[f] = verify_file(os.path.join(folder, f), **kwargs)
        except ParityError as e:  # keep proving the other graphs, then say which failed
            reports[f] = e.report
    merged = merge_reports(reports)
    if not merged.passed:
        raise parity_error(folder, reports)
    return merged


@contextmanager
def _snapshot(path: str, spec: Backend, *, in_place: bool):
    """A private copy of ``path`` (and its companions) to prove: beside it when it may replace it
    (``in_place``), else in a temporary folder (a read-only file can be verified)."""
    if in_place:
        with atomic_output(path, directory=spec.directory, companions=spec.companions, suffix=spec.suffix,
                           replaceable=lambda p: True) as target:
            _copy(path, target.tmp, spec)
            yield target
        return
    with tempfile.TemporaryDirectory(prefix="stateport-verify-") as tmp:
        copy = os.path.join(tmp, "model" + spec.suffix)
        _copy(path, copy, spec)
        yield _ReadOnly(copy)


@dataclass
class _ReadOnly:
    tmp: str


def _copy(src: str, dest: str, spec: Backend) -> None:
    if spec.directory:
        if os.path.isdir(dest):
            shutil.rmtree(dest)
        shutil.copytree(src, dest)
    else:
        shutil.copyfile(src, dest)
    for suffix in spec.companions:
        companion_src = os.path.splitext(src)[0] + suffix
        if os.path.exists(companion_src):
            shutil.copyfile(companion_src, os.path.splitext(dest)[0] + suffix)


def _require(spec: Backend, verify: bool) -> None:
    spec.require("export")
    if verify and spec.runs_here:
        spec.require("run")


def _is_package(path: str) -> bool:
    """A folder that is a Core ML package (what a previous .mlpackage export wrote)."""
    return os.path.isfile(os.path.join(path, "Manifest.json"))
