"""Registry of built-in architectures, each registered by name with named sizes.

Following HF optimum's exporters: one small entry per architecture, a decorator to register
it, and a test that fails when a registered architecture has no parity test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..errors import InvalidInputError


@dataclass
class Architecture:
    """A registered architecture: a builder taking keyword config and a table of sizes."""

    name: str
    description: str
    builder: Callable
    sizes: dict = field(default_factory=dict)
    default_size: str = "default"

    def config_for(self, size: str | None, overrides: dict | None = None) -> dict:
        size = size or self.default_size
        if size not in self.sizes:
            raise InvalidInputError(f"architecture {self.name!r} has no size {size!r}: "
                                    f"expected one of {', '.join(self.sizes)}")
        return {**self.sizes[size], **(overrides or {})}

    def build(self, size: str | None = None, *, config: dict | None = None, seed: int | None = 0):
        """Build the model; with a seed, weights are reproducible (so ``verify`` can rebuild them)."""
        cfg = config if config is not None else self.config_for(size)
        self._check_options(cfg)
        if seed is not None:
            with torch.random.fork_rng():
                torch.manual_seed(seed)
                model = self.builder(**cfg)
        else:
            model = self.builder(**cfg)
        model.architecture = self.name
        return model.eval()


    def _check_options(self, cfg: dict) -> None:
        """An option the builder does not take is a typed error naming the ones it does."""
        import inspect

        params = inspect.signature(self.builder).parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return
        unknown = sorted(set(cfg) - set(params))
        if unknown:
            raise InvalidInputError(f"architecture {self.name!r} has no option(s) {', '.join(unknown)}; "
                                    f"it takes {', '.join(sorted(params))}")


_REGISTRY: dict[str, Architecture] = {}


def register(name: str, *, description: str, sizes: dict, default_size: str = "default"):
    """Class/function decorator registering a builder under ``name``."""

    def wrap(builder):
        if name in _REGISTRY:
            raise ValueError(f"architecture {name!r} registered twice")
        _REGISTRY[name] = Architecture(name, description, builder, dict(sizes), default_size)
        return builder

    return wrap


def get_architecture(name: str) -> Architecture:
    if name not in _REGISTRY:
        raise InvalidInputError(f"unknown architecture {name!r}: expected one of {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def architectures() -> list[Architecture]:
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]
