"""Step-style modules: a user's ``forward(x_chunk, *state_in) -> (*outputs, *state_out)``.

Many hand-written streaming models (the seed article's ``StreamingLSTM`` among them) already
have the exported signature. :func:`declare_step` turns one into a :class:`StreamingModule` by
saying which arguments are state and what shape they have; the naming rule then gives the
ports: state ``h`` is fed through ``h_in`` and returned through ``h_out``.

Example (the seed's model)::

    model = declare_step(StreamingLSTM(80, 256),
                         input=("audio_chunk", ("batch", 80)),
                         outputs=["logits"],
                         states={"h": ("batch", 256), "c": ("batch", 256)})

gives ``audio_chunk, h_in, c_in -> logits, h_out, c_out``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InvalidInputError
from ..spec import BATCH_DIM, TIME_DIM
from .protocol import StateDecl, StreamingModule


class DeclaredStepModule(StreamingModule):
    """Wraps a step-style module whose state arguments were declared by the user.

    If the input shape has no time dimension (``"T"``), each call takes one frame and the
    offline reference runs the step over every frame of a sequence from a fresh state.
    """

    def __init__(self, module: nn.Module, *, input: tuple, outputs: list, states: dict,
                 init: dict | None = None, reset_on_end_of_speech: dict | None = None,
                 architecture: str = "custom"):
        super().__init__()
        self.inner = module
        name, shape = input
        shape = tuple(shape)
        if BATCH_DIM not in shape or shape.index(BATCH_DIM) != 0:
            raise InvalidInputError(f"input shape {shape} must start with the batch dimension {BATCH_DIM!r}")
        self.input_name = name
        self.output_names = tuple(outputs)
        self.input_dim = int(shape[-1])
        self.time_axis = shape.index(TIME_DIM) if TIME_DIM in shape else None
        if self.time_axis not in (None, 1):
            raise InvalidInputError(f"input shape {shape}: the time dimension must be axis 1 ([batch, T, F])")
        self.architecture = architecture
        init = init or {}
        resets = reset_on_end_of_speech or {}
        self._decls = []
        for sname, sshape in states.items():
            sshape = tuple(sshape)
            if BATCH_DIM not in sshape:
                raise InvalidInputError(f"state {sname!r} shape {sshape} lacks the batch dimension {BATCH_DIM!r}")
            self._decls.append(StateDecl(sname, sshape, init=float(init.get(sname, 0.0)),
                                         reset_on_end_of_speech=bool(resets.get(sname, True))))
        if self.time_axis is None:
            self.streaming.frames_per_step = 0

    def state_decls(self):
        return list(self._decls)

    def step(self, x, *state):
        out = self.inner(x, *state)
        if not isinstance(out, (tuple, list)):
            out = (out,)
        expected = len(self.output_names) + len(self._decls)
        if len(out) != expected:
            raise InvalidInputError(
                f"the module returned {len(out)} tensors; the declaration expects {expected} "
                f"({len(self.output_names)} outputs then {len(self._decls)} states)")
        return tuple(out)

    def forward(self, x):
        if self.time_axis is not None:
            return super().forward(x)
        # Frame-wise module: the offline reference is the step over every frame.
        state = self.init_state(x.shape[0])
        per_frame = []
        for t in range(x.shape[1]):
            out = self.step(x[:, t], *state)
            per_frame.append(out[: len(self.output_names)])
            state = out[len(self.output_names):]
        return tuple(torch.stack([f[i] for f in per_frame], dim=1) for i in range(len(self.output_names)))


def declare_step(module: nn.Module, *, input: tuple, outputs: list, states: dict, **kw) -> DeclaredStepModule:
    """Declare which arguments of a step-style module are state; see the module docstring."""
    return DeclaredStepModule(module, input=input, outputs=outputs, states=states, **kw)
