"""Where a torch model comes from: a registered architecture, a user's Python file, a checkpoint.

The card's provenance records enough to rebuild the torch reference later (``stateport
verify``): architecture + size/config + init seed, the checkpoint's SHA-256, or the module
spec ``FILE.py:OBJ``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import os
import sys

import torch

from ..errors import InvalidInputError, ModelFileError, ModuleImportError, UnsupportedError
from ..nn.audio_in import AudioInput
from ..nn.protocol import StreamingModule
from ..spec import ModelCard


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _user_line(error: BaseException, path: str) -> str:
    """``FILE:LINE`` of the innermost frame of ``error`` in the user's file ``path`` (else the file alone)."""
    target = os.path.realpath(path)
    line = None
    tb = error.__traceback__
    while tb is not None:
        if os.path.realpath(tb.tb_frame.f_code.co_filename) == target:
            line = tb.tb_lineno
        tb = tb.tb_next
    return f"{path}:{line}" if line else path


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def load_module_object(spec: str, *, seed: int = 0) -> StreamingModule:
    """``FILE.py:OBJ`` -> the StreamingModule it names (an instance, or a function without arguments returning one).

    The file runs under a fixed torch seed, so a module built with random weights is built
    the same way again when ``verify`` rebuilds it. Whatever goes wrong in the user's code (a
    syntax error, an exception at import or in the builder, an object that is not a model) is a
    ModuleImportError (``error[MODULE_IMPORT]``, exit 2) naming the file and line.
    """
    if not isinstance(spec, str) or ":" not in spec:
        raise InvalidInputError(f"--module {spec!r}: expected FILE.py:OBJECT")
    path, _, obj_name = spec.rpartition(":")
    if os.path.isdir(path) or (os.path.exists(path) and not path.endswith(".py")):
        raise ModuleImportError(f"--module {spec}: {path!r} is not a Python file; expected FILE.py:OBJECT")
    if not os.path.isfile(path):
        raise InvalidInputError(f"--module: file {path!r} does not exist")
    mod_name = f"_stateport_user_{abs(hash(os.path.abspath(path)))}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        try:
            module_spec.loader.exec_module(module)
        except SyntaxError as e:
            sys.modules.pop(mod_name, None)
            where = f"{path}:{e.lineno}" if e.lineno else path
            raise ModuleImportError(f"--module {spec}: {where}: SyntaxError: {e.msg}") from None
        except Exception as e:  # the user's code may raise anything at import
            sys.modules.pop(mod_name, None)
            raise ModuleImportError(f"--module {spec}: importing {_user_line(e, path)} raised {_one_line(e)}") \
                from None
        if not hasattr(module, obj_name):
            raise InvalidInputError(f"--module: {path!r} defines no {obj_name!r}")
        obj = getattr(module, obj_name)
        if not isinstance(obj, torch.nn.Module) and callable(obj):
            obj = _call_builder(obj, spec, path)
    if not isinstance(obj, StreamingModule):
        raise UnsupportedError(
            f"--module {spec}: {obj_name} is a {type(obj).__name__}, not a stateport StreamingModule; "
            "wrap a step-style module with stateport.nn.declare_step(...) to say which inputs are state")
    return obj.eval()


def _call_builder(builder, spec: str, path: str):
    """Call the function ``--module`` names (it must take no arguments) and return what it builds."""
    code = getattr(builder, "__code__", None)
    where = f"{path}:{code.co_firstlineno}" if code is not None else path
    try:
        signature = inspect.signature(builder)
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        signature = None
    if signature is not None:
        required = [p.name for p in signature.parameters.values()
                    if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        if required:
            raise ModuleImportError(
                f"--module {spec}: {where}: {getattr(builder, '__name__', 'the object')} is a function of "
                f"({', '.join(required)}); expected a StreamingModule, or a function without arguments that "
                "returns one")
    try:
        return builder()
    except Exception as e:  # the user's builder may raise anything
        raise ModuleImportError(f"--module {spec}: calling {getattr(builder, '__name__', 'it')} "
                                f"({where}) raised {_one_line(e)} at {_user_line(e, path)}") from None


def _checkpoint_file(path: str | os.PathLike) -> str:
    path = os.fspath(path)
    if os.path.isdir(path):
        raise ModelFileError(f"checkpoint {path!r} is a directory: expected a .pt file")
    if not os.path.isfile(path):
        raise ModelFileError(f"checkpoint {path!r} does not exist")
    return path


def _why_unreadable(error: Exception) -> str:
    """What torch.load(weights_only=True)'s error means, in one line (its own message is a paragraph)."""
    import re

    text = str(error)
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return (f"holds pickled Python objects ({found.group(1)}), not only weights: save model.state_dict() "
                "(stateport loads weights, never code, from a checkpoint)")
    if isinstance(error, EOFError) or not text.strip():
        return "is empty or truncated: expected a torch checkpoint (.pt)"
    return f"is not a torch checkpoint ({type(error).__name__}); expected a file written by torch.save"


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A checkpoint's contents, checked once where it enters: a dict holding ``state_dict``.

    Accepts what ``stateport train`` writes (``architecture``, ``config``, ``state_dict``, ``recipe``)
    or a bare state_dict (returned as ``{"state_dict": ...}``). ModelFileError (exit 2) for a path that
    is missing, a folder, not a torch file, or a file without weights.
    """
    path = _checkpoint_file(path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises pickle/zip errors of many types for a bad file
        raise ModelFileError(f"checkpoint {path!r} {_why_unreadable(e)}") from None
    if isinstance(data, dict) and isinstance(data.get("state_dict"), dict):
        return data
    if isinstance(data, dict) and data and all(isinstance(v, torch.Tensor) for v in data.values()):
        return {"state_dict": data}
    raise ModelFileError(f"checkpoint {path!r} holds no state_dict: expected a dict of tensors, or a dict with "
                         "'state_dict' (as `stateport train` writes)")


def load_checkpoint(model: torch.nn.Module, path: str | os.PathLike, data: dict | None = None) -> str:
    """Load weights (a state_dict, or a dict with ``state_dict``) into ``model``; returns the file's SHA-256.

    ``data``: the file's contents if :func:`read_checkpoint` already read them.
    """
    path = os.fspath(path)
    state_dict = (data if data is not None else read_checkpoint(path))["state_dict"]
    ours = model.state_dict()
    missing = [k for k in ours if k not in state_dict]
    unexpected = [k for k in state_dict if k not in ours]
    reshaped = [f"{k} {list(v.shape)} vs {list(ours[k].shape)}" for k, v in state_dict.items()
                if k in ours and hasattr(v, "shape") and tuple(v.shape) != tuple(ours[k].shape)]
    if missing or unexpected or reshaped:
        parts = [f"{len(found)} {what} (e.g. {', '.join(found[:3])})"
                 for what, found in (("missing", missing), ("unexpected", unexpected), ("of another shape", reshaped))
                 if found]
        raise ModelFileError(f"checkpoint {path!r} does not fit the model: weights {'; '.join(parts)}")
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        raise ModelFileError(f"checkpoint {path!r} does not fit the model: {str(e).splitlines()[0]}") from None
    return sha256_file(path)


def checkpoint_config(path: str | os.PathLike) -> dict | None:
    """The architecture config saved beside the weights, if the checkpoint carries one."""
    return read_checkpoint(path).get("config")


def build_model(*, arch: str | None = None, size: str | None = None, module: str | None = None,
                checkpoint: str | None = None, config: dict | None = None, seed: int = 0):
    """Build the torch model to export; returns ``(model, provenance dict)``."""
    from ..zoo import get_architecture

    if (arch is None) == (module is None):
        raise InvalidInputError("give exactly one of --arch NAME or --module FILE.py:OBJ")
    data = read_checkpoint(checkpoint) if checkpoint is not None else None
    if arch is not None:
        entry = get_architecture(arch)
        trained_for = data.get("architecture") if data is not None else None
        if trained_for is not None and trained_for != arch:
            raise ModelFileError(f"checkpoint {checkpoint!r} holds a {trained_for!r} model, not {arch!r}: "
                                 f"export it with --arch {trained_for}")
        if config is None and data is not None:
            config = data.get("config")
        cfg = config if config is not None else entry.config_for(size)
        model = entry.build(config=cfg, seed=seed)
        prov = {"architecture": arch, "size": size if config is None else size, "config": cfg, "init_seed": seed}
    else:
        model = load_module_object(module, seed=seed)
        prov = {"architecture": getattr(model, "architecture", "custom"), "module": module, "init_seed": seed}
    if checkpoint is not None:
        prov["checkpoint_sha256"] = load_checkpoint(model, checkpoint, data)
    return model.eval(), prov


def measured_tail(provenance: dict, source: str | os.PathLike | None = None) -> tuple[float, str] | None:
    """The measured end-of-input tail ``(streaming.tail_padding_ms, basis)`` of the weights ``provenance``
    names, from the card of a stateport file made from the same weights; None when there is none.

    A tail is measured on trimmed held-out speech (:mod:`stateport.verify.tail`): it is the trained
    weights' emission delay, so every export of those weights may carry it. ``source``: such a
    file (InvalidInputError unless its card names the same architecture and checkpoint and
    carries a tail); default: the built-in model, when ``provenance`` is its checkpoint's.
    """
    from ..assets import builtin_dir
    from ..runtime.model_file import read_card

    sha = provenance.get("checkpoint_sha256")
    explicit = source is not None
    if not explicit:
        source = builtin_dir() / "model.onnx"
        if not sha or not source.is_file():
            return None
    card = read_card(os.fspath(source))
    p, st = card.provenance, card.streaming
    if not sha or p.checkpoint_sha256 != sha or p.architecture != provenance.get("architecture"):
        if not explicit:
            return None
        raise InvalidInputError(f"--tail-from {os.fspath(source)}: its card names {p.architecture} weights (checkpoint "
                                f"sha256 {(p.checkpoint_sha256 or 'none')[:12]}), not the ones exported "
                                f"({provenance.get('architecture')}, checkpoint {(sha or 'none')[:12]}): a measured "
                                "tail belongs to the weights it was measured on")
    if st.tail_padding_ms is None:
        if explicit:
            raise InvalidInputError(f"--tail-from {os.fspath(source)}: its card carries no tail_padding_ms")
        return None
    return st.tail_padding_ms, f"{st.tail_padding_basis} (measured on {card.name}, the same checkpoint)"


def rebuild_reference(card: ModelCard, *, module: str | None = None, checkpoint: str | None = None):
    """The torch model a card was exported from, for re-running its parity proof."""
    p = card.provenance
    if module is None and p.module is not None:
        raise InvalidInputError(f"this model was exported from --module {p.module}; pass --module to verify it")
    if p.checkpoint_sha256 and checkpoint is None:
        raise InvalidInputError("this model was exported from a checkpoint "
                                f"(sha256 {p.checkpoint_sha256[:12]}…); pass --checkpoint to verify it")
    if checkpoint is not None and not p.checkpoint_sha256:
        weights = f"--module {p.module}" if p.module else f"init seed {p.init_seed or 0}"
        raise InvalidInputError(f"this model was exported without a checkpoint (weights of {weights}); "
                                f"verify it without --checkpoint")
    if checkpoint is not None and sha256_file(_checkpoint_file(checkpoint)) != p.checkpoint_sha256:
        raise InvalidInputError(f"checkpoint {checkpoint!r} is not the one this model was exported from "
                                f"(expected sha256 {p.checkpoint_sha256[:12]}…)")
    if module is not None:
        model, _ = build_model(module=module, checkpoint=checkpoint, seed=p.init_seed or 0)
    else:
        model, _ = build_model(arch=p.architecture, config=p.config, seed=p.init_seed or 0, checkpoint=checkpoint)
    # An audio-in file (the frontend inside the graph) was exported from the model wrapped in AudioInput.
    return AudioInput(model).eval() if card.audio_input else model
