"""declare_step on modules written without stateport: where the state lives, what gets lifted,
and the errors (each naming the state and the declaration that fixes it)."""

import collections
import dataclasses
from pathlib import Path

import pytest
import torch
from torch import nn

from stateport.errors import InvalidInputError, UndeclaredStateError
from stateport.export.sources import load_module_object
from stateport.nn import declare_step, take_valid, valid_mask
from stateport.nn import state_tree

GRU_EXAMPLE = f"{Path(__file__).resolve().parents[2]}/examples/third_party/gru_buffer_state.py:model"
F = 8  # features per frame in these toy models
IN = ("x", ("batch", "T", F))


def own_loop(module, chunks, call):
    """Run ``module`` the way its authors do (state kept their way); outputs per chunk."""
    with torch.no_grad():
        return [call(module, c) for c in chunks]


def lifted_loop(model, chunks):
    state = model.init_state(chunks[0].shape[0])
    outs = []
    with torch.no_grad():
        for c in chunks:
            out = model.step(c, *state)
            outs.append(out[0])
            state = out[len(model.output_names):]
    return outs


def chunks(n=5, frames=4, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, frames, F, generator=g) for _ in range(n)]


# -- the codec -------------------------------------------------------------------------------
@dataclasses.dataclass
class LayerCtx:
    size: int
    cache: torch.Tensor | None = None


Pair = collections.namedtuple("Pair", "h c")


def test_structures_flatten_by_path_and_rebuild_fresh():
    template = {"layers": [LayerCtx(4), LayerCtx(4, torch.zeros(1))], "rnn": Pair(torch.ones(2), torch.zeros(2)),
                "nested": [[torch.ones(1)], [torch.ones(1), None]]}
    leaves = dict(state_tree.flatten(template))
    assert list(map(state_tree.path_str, leaves)) == [
        "layers.0.size", "layers.0.cache", "layers.1.size", "layers.1.cache", "rnn.h", "rnn.c",
        "nested.0.0", "nested.1.0", "nested.1.1"]
    new = state_tree.rebuild(template, {("layers", 0, "cache"): torch.full((3,), 7.0), ("rnn", "c"): torch.ones(5)})
    assert new["layers"][0].cache.tolist() == [7.0] * 3 and new["layers"][0].size == 4
    assert isinstance(new["rnn"], Pair) and new["rnn"].c.shape == (5,)
    new["layers"][1].cache = None  # the model mutates what it is given ...
    assert template["layers"][1].cache is not None and template["layers"][0].cache is None  # ... never the template
    assert state_tree.port_name("context", "encoder.layers.0._state") == "context_encoder_layers_0_state"


def test_valid_length_helpers():
    buf = torch.arange(12.0).reshape(1, 6, 2)
    assert take_valid(buf, torch.tensor([2]), 1).tolist() == [[[8.0, 9.0], [10.0, 11.0]]]
    assert take_valid(buf, torch.tensor([0]), 1).shape == (1, 0, 2)
    assert valid_mask(torch.tensor([0, 2, 4]), 4).tolist() == [
        [False] * 4, [False, False, True, True], [True] * 4]


# -- hidden state on self -----------------------------------------------------------------------
class InPlaceCache(nn.Module):
    """Keeps the last 3 frames in a batch-1 buffer updated in place, and a frame counter in an int64 buffer."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(F, F)
        self.register_buffer("cache", torch.zeros(1, 3, F))
        self.register_buffer("frames_seen", torch.zeros((), dtype=torch.long))

    def forward(self, x):
        full = torch.cat([self.cache, x], 1)
        y = self.proj(full).unfold(1, 4, 1).mean(-1) + self.frames_seen.to(x.dtype) / 100
        self.cache.copy_(full[:, -3:])  # in place
        self.frames_seen += x.shape[1]
        return y


def test_in_place_buffers_are_lifted_with_their_dtype_and_module_restored():
    net = InPlaceCache()
    model = declare_step(net, input=IN, outputs=["y"])
    decls = {d.name: d for d in model.state_decls()}
    assert set(decls) == {"cache", "frames_seen"}
    assert decls["cache"].shape == ("batch", 3, F) and decls["cache"].batch_axis == 0
    # a 0-dim counter has no batch axis: one value for the batch, carried per stream as [batch]
    assert decls["frames_seen"].dtype == torch.int64 and decls["frames_seen"].batch_uniform
    assert decls["frames_seen"].shape == ("batch",)
    xs = chunks()
    fresh = InPlaceCache()
    fresh.load_state_dict(net.state_dict())
    expected = own_loop(fresh, xs, lambda m, c: m(c))
    got = lifted_loop(model, xs)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(got, expected))
    assert net.frames_seen.item() == 0 and not net.cache.any()  # the declared module was left as constructed


class ReassignedAttribute(nn.Module):
    """``self.h`` starts as None; the step reassigns it (not a buffer)."""

    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(F, 16, batch_first=True)
        self.h = None

    def forward(self, x):
        y, self.h = self.rnn(x, self.h)
        return y


def test_attribute_starting_as_none_starts_as_zeros_when_that_is_the_same():
    model = declare_step(ReassignedAttribute(), input=IN, outputs=["y"])
    (h,) = model.state_decls()
    assert (h.name, h.shape, h.batch_axis, h.init, h.valid_length_state) == ("h", (1, "batch", 16), 1, 0.0, None)


class ContextThatStartsEmpty(nn.Module):
    """Prepends a processed left context that is None at first (zeros would change the output)."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(F, F)
        self.ctx = None

    def forward(self, x):
        h = self.proj(x)
        full = h if self.ctx is None else torch.cat([self.ctx, h], 1)
        self.ctx = full[:, -2:]
        return torch.softmax(full, dim=1)[:, -x.shape[1]:]


def test_state_that_must_start_empty_gets_a_valid_length():
    model = declare_step(ContextThatStartsEmpty(), input=IN, outputs=["y"])
    ctx, valid = model.state_decls()
    assert (ctx.name, ctx.shape, ctx.valid_length_state, ctx.grow_axis) == ("ctx", ("batch", 2, F), "ctx_valid", 1)
    assert (valid.dtype, valid.init, valid.batch_uniform) == (torch.int64, 0, True)
    xs = chunks()
    fresh = ContextThatStartsEmpty()
    fresh.load_state_dict(model.inner.state_dict())
    expected = own_loop(fresh, xs, lambda m, c: m(c))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(lifted_loop(model, xs), expected))


class GrowingCache(nn.Module):
    """A cache that grows by one chunk per call, up to ``limit`` frames (or without limit)."""

    def __init__(self, limit=None):
        super().__init__()
        self.limit = limit
        self.cache = None

    def forward(self, x):
        full = x if self.cache is None else torch.cat([self.cache, x], 1)
        self.cache = full if self.limit is None else full[:, -self.limit:]
        return full.mean(1, keepdim=True).expand(-1, x.shape[1], -1)


def test_growing_state_gets_its_observed_maximum():
    model = declare_step(GrowingCache(limit=8), input=IN, outputs=["y"], chunk=4)
    cache, valid = model.state_decls()
    assert cache.shape == ("batch", 8, F) and valid.name == "cache_valid"
    xs = chunks(6, frames=4)
    expected = own_loop(GrowingCache(limit=8), xs, lambda m, c: m(c))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(lifted_loop(model, xs), expected))


def test_state_growing_without_limit_is_refused_with_the_fix():
    with pytest.raises(UndeclaredStateError, match=r"grows without a limit.*grow=\{'cache': \d+\}"):
        declare_step(GrowingCache(), input=IN, outputs=["y"], chunk=4, probe_steps=6)
    model = declare_step(GrowingCache(), input=IN, outputs=["y"], chunk=4, probe_steps=6, grow={"cache": 12})
    assert model.state_decls()[0].shape == ("batch", 12, F)


class PythonCounter(nn.Module):
    def __init__(self, used=True):
        super().__init__()
        self.used = used
        self.n = 0

    def forward(self, x):
        self.n += 1
        return x * self.n if self.used else x * 2


def test_python_number_state_is_refused_naming_it_and_both_fixes():
    with pytest.raises(UndeclaredStateError) as e:
        declare_step(PythonCounter(), input=IN, outputs=["y"])
    assert "'n' (int 0 -> int 1 -> int 2" in str(e.value)
    assert "register_buffer('n'" in str(e.value) and "ignore=['n']" in str(e.value)
    model = declare_step(PythonCounter(used=False), input=IN, outputs=["y"], ignore=["n"])
    assert model.state_decls() == []
    with pytest.raises(UndeclaredStateError, match="differs from the module's own loop"):
        declare_step(PythonCounter(), input=IN, outputs=["y"], ignore=["n"])  # ignored but used: caught


class BatchOneOnly(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("h", torch.zeros(1, 1, F))

    def forward(self, x):
        self.h = self.h + x[:1].mean(1, keepdim=True)  # written for one stream: the batch is dropped
        return x + self.h


def test_undecidable_batch_axis_names_the_state_and_the_declaration():
    with pytest.raises(UndeclaredStateError, match=r"batch axis of state h \(1, 1, 8\).*batch_axes=\{'h': 0\}"):
        declare_step(BatchOneOnly(), input=IN, outputs=["y"])


def test_declared_batch_axis_is_used_without_guessing():
    model = load_module_object(GRU_EXAMPLE)
    again = declare_step(model.inner, input=("features", ("batch", "T", 40)), outputs=["logits"],
                         batch_axes={"h": 1})
    assert [(d.name, d.shape) for d in again.state_decls()] == [("h", (1, "batch", 64))]


# -- structures as arguments --------------------------------------------------------------------
class DictStates(nn.Module):
    """``forward(x, state: dict) -> (y, new_state)`` with a nested list inside the dict."""

    def __init__(self):
        super().__init__()
        self.cell = nn.GRUCell(F, 6)

    def forward(self, x, state):
        h = state["h"]
        ys = []
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
            ys.append(h)
        hist = [[state["hist"][0][0] + x.sum(1)], [state["hist"][1][0] * 0.5 + h.mean(1, keepdim=True)]]
        return torch.stack(ys, 1), {"h": h, "hist": hist}


def test_dict_of_nested_lists_returned_by_name():
    net = DictStates()
    init = lambda b: {"h": torch.zeros(b, 6), "hist": [[torch.zeros(b, F)], [torch.zeros(b, 1)]]}  # noqa: E731
    model = declare_step(net, input=IN, outputs=["y", "state"], states={"state": init})
    assert [d.name for d in model.state_decls()] == ["state_h", "state_hist_0_0", "state_hist_1_0"]
    xs = chunks()

    def call(m, c, box={"s": init(1)}):
        y, box["s"] = m(c, box["s"])
        return y
    expected = own_loop(net, xs, call)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(lifted_loop(model, xs), expected))


def test_declaration_mistakes_say_what_was_expected():
    with pytest.raises(InvalidInputError, match="returned 2 values; the declaration expects 1"):
        declare_step(ReassignedAttribute().rnn, input=IN, outputs=["y"])
    gru = load_module_object(GRU_EXAMPLE).inner
    with pytest.raises(InvalidInputError, match=r"calling StatefulGRU.forward\(features, h\) on an example chunk "
                                                r"failed: TypeError.*signature is forward\(x\).*needs no declaration"):
        declare_step(gru, input=("features", ("batch", "T", 40)), outputs=["logits"], states={"h": (1, "batch", 64)})


# -- TorchScript -------------------------------------------------------------------------------
class ScriptedCounter(nn.Module):
    """Scripted, with a tensor state that starts empty and a plain int it updates."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(F, F)
        self._state = torch.zeros(0)
        self._calls = 0

    def forward(self, x: torch.Tensor, scale: float) -> torch.Tensor:
        if self._state.numel() == 0:
            self._state = torch.zeros(x.shape[0], x.shape[2])
        y = self.proj(x) * scale + self._state.unsqueeze(1)
        self._state = y[:, -1]
        self._calls = self._calls + 1
        return y


def test_torchscript_tensor_attributes_become_ports_and_ints_are_held():
    scripted = torch.jit.script(ScriptedCounter())
    model = declare_step(scripted, input=IN, outputs=["y"], bind={"scale": 0.5})
    assert [(d.name, d.shape) for d in model.state_decls()] == [("state", ("batch", F))]
    assert model.constants == {"scale": 0.5}
    xs = chunks()
    fresh = torch.jit.script(ScriptedCounter())
    fresh.load_state_dict(scripted.state_dict())
    expected = own_loop(fresh, xs, lambda m, c: m(c, 0.5))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(lifted_loop(model, xs), expected))
    assert scripted._state.numel() == 0 and scripted._calls == 0  # left as loaded


class ScriptedList(nn.Module):
    history: list[torch.Tensor]

    def __init__(self):
        super().__init__()
        self.history = [torch.zeros(1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.history = self.history + [x]
        return x


def test_torchscript_attribute_that_cannot_be_lifted_is_refused_before_running():
    with pytest.raises(UndeclaredStateError, match=r"assigns history \(List\[Tensor\]\)"):
        declare_step(torch.jit.script(ScriptedList()), input=IN, outputs=["y"])
