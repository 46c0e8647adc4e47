"""``stateport export --web DIR``: a folder that serves a live-microphone page for an audio-in model.

The folder holds the model (``model.onnx``, certified by its export), the browser client from
the repository's ``clients/web`` (``index.html``, ``stateport.js``, ``capture-worklet.js``) and
ONNX Runtime Web's WebAssembly build (``ort/``, from ``clients/web/node_modules`` after ``npm ci``
there). Serve it with ``python -m http.server -d DIR`` and open http://localhost:8000/: the page
reads the card from the model file itself, so nothing else describes the model.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..atomic import atomic_copy, atomic_write_bytes
from ..errors import InvalidInputError, MissingDependencyError
from ..runtime.model_file import read_card
from ..verify.state_defaults import onnx_without_state_defaults

CLIENT_FILES = ("index.html", "stateport.js", "capture-worklet.js")
# onnxruntime-web's WebAssembly-only build: the ES module, its loader and the SIMD binary.
ORT_FILES = ("ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
MODEL_NAME = "model.onnx"


def client_dir() -> Path:
    """The browser client in this checkout (``clients/web`` beside the ``stateport`` package)."""
    return Path(__file__).resolve().parents[2] / "clients" / "web"


def client_sources(client: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """The client folder and ONNX Runtime Web's ``dist`` folder, or a typed error saying what is missing."""
    src = Path(client) if client is not None else client_dir()
    missing = [name for name in CLIENT_FILES if not (src / name).is_file()]
    if missing:
        raise MissingDependencyError(f"--web: the browser client is not at {src} (missing {', '.join(missing)}); it "
                                     "ships in the stateport repository's clients/web")
    ort_src = src / "node_modules" / "onnxruntime-web" / "dist"
    if not all((ort_src / name).is_file() for name in ORT_FILES):
        raise MissingDependencyError(f"--web: ONNX Runtime Web is not installed at {ort_src}: run `npm ci` in {src}")
    return src, ort_src


def write_web_page(out_dir: str | os.PathLike, model: str | os.PathLike | None = None, *,
                   client: str | os.PathLike | None = None) -> dict:
    """Write the page, the client and ONNX Runtime Web into ``out_dir``; copy ``model`` there unless it is there.

    ``model``: an audio-in stateport ONNX file (default: ``out_dir/model.onnx``, e.g. just exported
    there). The page's copy has no state defaults: ONNX Runtime's JavaScript API (1.30) does not
    list an input that has an initializer and then refuses (web) or silently ignores (node) a feed
    of it, so with the defaults every call would start from the initial state. Without them every
    state is a required input; the graph, weights and card (its certificate) are the model's.
    Returns ``{"dir", "model", "files", "bytes"}``. Every file is written atomically
    (:mod:`stateport.atomic`).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    target = out / MODEL_NAME
    source = Path(model) if model is not None else target
    if not source.is_file():
        raise InvalidInputError(f"--web: no model at {source}")
    card = read_card(str(source))
    if not card.audio_input:
        raise InvalidInputError(f"--web: {source} takes feature frames; the page feeds microphone audio, so export "
                                "it with --audio-input (the frontend inside the graph)")
    if card.output.kind != "ctc":
        raise InvalidInputError(f"--web: the page decodes CTC models; {source} has output kind {card.output.kind!r}")
    src, ort_src = client_sources(client)
    atomic_write_bytes(target, onnx_without_state_defaults(source))
    written = [target]
    for name in CLIENT_FILES:
        written.append(Path(atomic_copy(src / name, out / name)))
    (out / "ort").mkdir(exist_ok=True)
    for name in ORT_FILES:
        written.append(Path(atomic_copy(ort_src / name, out / "ort" / name)))
    return {"dir": str(out), "model": str(target), "files": [str(p.relative_to(out)) for p in written],
            "bytes": {str(p.relative_to(out)): p.stat().st_size for p in written}}
