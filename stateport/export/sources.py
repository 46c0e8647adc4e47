"""Where a torch model comes from: a registered architecture, a user's Python file, a checkpoint.

The card's provenance records enough to rebuild the torch reference later (``stateport
verify``): architecture + size/config + init seed, the checkpoint's SHA-256, or the module
spec ``FILE.py:OBJ``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys

import torch

from ..errors import InvalidInputError, ModelFileError, UnsupportedError
from ..nn.protocol import StreamingModule
from ..spec import ModelCard


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def load_module_object(spec: str, *, seed: int = 0) -> StreamingModule:
    """``FILE.py:OBJ`` -> the StreamingModule it names (an instance, or a callable returning one).

    The file runs under a fixed torch seed, so a module built with random weights is built
    the same way again when ``verify`` rebuilds it.
    """
    if ":" not in spec:
        raise InvalidInputError(f"--module {spec!r}: expected FILE.py:OBJECT")
    path, _, obj_name = spec.rpartition(":")
    if not os.path.isfile(path):
        raise InvalidInputError(f"--module: file {path!r} does not exist")
    mod_name = f"_stateport_user_{abs(hash(os.path.abspath(path)))}"
    module_spec = importlib.util.spec_from_file_location(mod_name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[mod_name] = module
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        module_spec.loader.exec_module(module)
        if not hasattr(module, obj_name):
            raise InvalidInputError(f"--module: {path!r} defines no {obj_name!r}")
        obj = getattr(module, obj_name)
        if not isinstance(obj, torch.nn.Module) and callable(obj):
            obj = obj()
    if not isinstance(obj, StreamingModule):
        raise UnsupportedError(
            f"--module {spec}: {obj_name} is a {type(obj).__name__}, not a stateport StreamingModule; "
            "wrap a step-style module with stateport.nn.declare_step(...) to say which inputs are state")
    return obj.eval()


def load_checkpoint(model: torch.nn.Module, path: str | os.PathLike) -> str:
    """Load weights (a state_dict, or a dict with ``state_dict``) into ``model``; returns the file's SHA-256."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"checkpoint {path!r} does not exist")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises pickle/zip errors of many types for a bad file
        raise ModelFileError(f"checkpoint {path!r} cannot be read: {type(e).__name__}: {e}") from None
    state_dict = data.get("state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state_dict, dict):
        raise ModelFileError(f"checkpoint {path!r} holds no state_dict")
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as e:
        raise ModelFileError(f"checkpoint {path!r} does not fit the model: {str(e).splitlines()[0]}") from None
    return sha256_file(path)


def checkpoint_config(path: str | os.PathLike) -> dict | None:
    """The architecture config saved beside the weights, if the checkpoint carries one."""
    data = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    return data.get("config") if isinstance(data, dict) else None


def build_model(*, arch: str | None = None, size: str | None = None, module: str | None = None,
                checkpoint: str | None = None, config: dict | None = None, seed: int = 0):
    """Build the torch model to export; returns ``(model, provenance dict)``."""
    from ..zoo import get_architecture

    if (arch is None) == (module is None):
        raise InvalidInputError("give exactly one of --arch NAME or --module FILE.py:OBJ")
    if arch is not None:
        entry = get_architecture(arch)
        if config is None and checkpoint is not None:
            config = checkpoint_config(checkpoint)
        cfg = config if config is not None else entry.config_for(size)
        model = entry.build(config=cfg, seed=seed)
        prov = {"architecture": arch, "size": size if config is None else size, "config": cfg, "init_seed": seed}
    else:
        model = load_module_object(module, seed=seed)
        prov = {"architecture": getattr(model, "architecture", "custom"), "module": module, "init_seed": seed}
    if checkpoint is not None:
        prov["checkpoint_sha256"] = load_checkpoint(model, checkpoint)
    return model.eval(), prov


def rebuild_reference(card: ModelCard, *, module: str | None = None, checkpoint: str | None = None):
    """The torch model a card was exported from, for re-running its parity proof."""
    p = card.provenance
    if module is None and p.module is not None:
        raise InvalidInputError(f"this model was exported from --module {p.module}; pass --module to verify it")
    if p.checkpoint_sha256 and checkpoint is None:
        raise InvalidInputError("this model was exported from a checkpoint "
                                f"(sha256 {p.checkpoint_sha256[:12]}…); pass --checkpoint to verify it")
    if checkpoint is not None and p.checkpoint_sha256 and sha256_file(checkpoint) != p.checkpoint_sha256:
        raise InvalidInputError(f"checkpoint {checkpoint!r} is not the one this model was exported from "
                                f"(expected sha256 {p.checkpoint_sha256[:12]}…)")
    if module is not None:
        model, _ = build_model(module=module, checkpoint=checkpoint, seed=p.init_seed or 0)
        return model
    model, _ = build_model(arch=p.architecture, config=p.config, seed=p.init_seed or 0, checkpoint=checkpoint)
    return model
