"""The table of backends: name -> extra, file suffix, implementing module, dependencies.

Every export (ONNX included) goes through this table and the one export job
(:func:`stateport.export.export_model`). A backend module implements (duck-typed, like the runners):

- ``convert(model, settings: ExportSettings) -> Artifact``: the converted program in memory plus
  its card; ``Artifact.save(path, card)`` writes the file with that card inside (called again
  after the parity proof, with the certificate); settings it does not offer it refuses
  (``settings.refuse(...)``);
- ``read_card(path) -> ModelCard``: the card stored in a file of this format;
- ``write_card(path, card)``: replace the card of a file (``verify --write-certificate``), or
  ``UnsupportedError`` where the format bakes it in (ExecuTorch);
- ``make_runner(path, card, *, optimization=None) -> runner`` for
  :func:`stateport.verify.prove_parity`, or ``UnsupportedError`` where the format cannot run on
  this machine (Core ML on Linux);
- optionally ``check_file(path, card, *, tolerance) -> ParityReport``: what can be verified
  without running it (Core ML: the spec read back against the card).

A new format is a module with these functions and one :class:`Backend` row below.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass

from ...errors import InvalidInputError, MissingDependencyError, ModelFileError


@dataclass(frozen=True)
class Backend:
    """One export target.

    ``export_deps`` / ``run_deps`` map import names to the PyPI names that provide them; a
    missing one raises :class:`MissingDependencyError` naming ``extra``. ``directory``: the file
    is a folder (``.mlpackage``); ``companions``: suffixes of files written beside it (OpenVINO's
    ``.bin``), which travel with it (:mod:`stateport.atomic`).

    ``layout_of``: the backend whose files this one writes, in another runtime's folder layout
    (sherpa-onnx: ONNX files plus ``tokens.txt``). Its export is always a folder: the module's
    ``graphs(model)`` says which graphs (or refuses the model), ``folder_files(cards)`` what is
    written beside them; the files are then read, run and verified as ``layout_of``'s.
    """

    name: str
    description: str
    extra: str | None
    suffix: str
    module: str
    export_deps: tuple = ()
    run_deps: tuple = ()
    runs_here: bool = True
    static_only: bool = False
    directory: bool = False
    companions: tuple = ()
    layout_of: str | None = None

    @property
    def install_hint(self) -> str:
        return f"pip install 'stateport[{self.extra}]'" if self.extra else "pip install stateport"

    def missing(self, purpose: str = "export") -> list:
        """PyPI names of the dependencies for ``purpose`` ("export" or "run") not importable here."""
        deps = self.export_deps if purpose == "export" else self.run_deps
        return [pypi for mod, pypi in deps if importlib.util.find_spec(mod) is None]

    def available(self, purpose: str = "export") -> bool:
        return not self.missing(purpose)

    def require(self, purpose: str = "export") -> None:
        """Raise MissingDependencyError (naming the extra) when a dependency for ``purpose`` is missing."""
        missing = self.missing(purpose)
        if missing:
            raise MissingDependencyError(
                f"the {self.name} backend needs {', '.join(missing)} to {purpose} models: "
                f"{self.install_hint}")

    def impl(self, purpose: str = "export"):
        """The implementing module, after checking its dependencies."""
        self.require(purpose)
        return importlib.import_module(self.module)


_PKG = __name__.rsplit(".", 1)[0]

BACKENDS: dict[str, Backend] = {b.name: b for b in (
    Backend("onnx", "ONNX (ONNX Runtime, and the source for SNPE/QNN and OpenVINO)", None, ".onnx",
            f"{_PKG}.onnx_file", export_deps=(("onnx", "onnx"),), run_deps=(("onnxruntime", "onnxruntime"),)),
    Backend("tflite", "TFLite / LiteRT flatbuffer via litert-torch", "tflite", ".tflite", f"{_PKG}.tflite",
            export_deps=(("litert_torch", "litert-torch"), ("ai_edge_litert", "ai-edge-litert")),
            run_deps=(("ai_edge_litert", "ai-edge-litert"),), static_only=True),
    Backend("coreml", "Core ML ML Program (.mlpackage) via coremltools", "coreml", ".mlpackage",
            f"{_PKG}.coreml", export_deps=(("coremltools", "coremltools"),),
            run_deps=(("coremltools", "coremltools"),), runs_here=False, directory=True),
    Backend("executorch", "ExecuTorch program (.pte) with the XNNPACK delegate", "executorch", ".pte",
            f"{_PKG}.executorch_pte", export_deps=(("executorch", "executorch"),),
            run_deps=(("executorch", "executorch"),)),
    Backend("openvino", "OpenVINO IR (.xml + .bin), converted from the ONNX export", "openvino", ".xml",
            f"{_PKG}.openvino_ir", export_deps=(("openvino", "openvino"), ("onnx", "onnx")),
            run_deps=(("openvino", "openvino"),), companions=(".bin",)),
    Backend("sherpa-onnx", "sherpa-onnx's online transducer folder (ONNX graphs + metadata + tokens.txt)", None,
            ".onnx", f"{_PKG}.sherpa_onnx", export_deps=(("onnx", "onnx"),), run_deps=(("onnxruntime", "onnxruntime"),),
            layout_of="onnx"),
)}


def backend_names() -> list:
    return list(BACKENDS)


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise InvalidInputError(f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def backend_for_path(path: str | os.PathLike) -> Backend:
    """The backend whose files end like ``path`` (``.onnx``, ``.tflite``, ``.mlpackage``, ``.pte``, ``.xml``):
    the suffix is how the formats are told apart (each format's reader then checks the content)."""
    p = os.fspath(path).rstrip("/")
    files = [b for b in BACKENDS.values() if b.layout_of is None]  # a layout's files are another backend's
    for b in files:
        if p.endswith(b.suffix):
            return b
    raise ModelFileError(f"{p!r}: unknown model file type; expected one of "
                         f"{', '.join(b.suffix for b in files)}")


def read_backend_card(path: str | os.PathLike):
    """The card stored in any stateport file, whatever its format (dispatch on the suffix)."""
    backend = backend_for_path(path)
    if not os.path.exists(os.fspath(path)):
        raise ModelFileError(f"model file {os.fspath(path)!r} does not exist")
    return backend.impl("run").read_card(path)
