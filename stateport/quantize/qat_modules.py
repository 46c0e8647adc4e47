"""QAT-friendly twins of nn.Linear and nn.LSTM: fake-quantized gate matmuls, same parameters, same state.

Why not torchao's PT2E flow as is (measured on torch 2.13 / torchao 0.18, see the report in
:mod:`stateport.quantize.qat`): ``torch.export`` keeps ``aten.lstm.input`` as one opaque op and the
XNNPACK-style quantizer annotates only the Linear after it, so the LSTM (most of the weights) is
not quantized; a custom annotation of ``aten.lstm.input`` works (PT2E walks list arguments), but
``torch.export`` specialises the LSTM's time axis (a dynamic ``T`` is a constraint violation), so
the trained graph only takes one fixed length, and exporting the 2x192 model at T=400 took 97 s
here. An LSTM unrolled into Linear gates over a Python time loop has the same problem at export.

The twin here keeps the fused LSTM kernel and quantizes exactly what an int8 LSTM kernel consumes:

- the layer input ``x`` (per-tensor affine int8, moving-average min/max, torchao FakeQuantize);
- every gate weight matrix ``W_ih``/``W_hh`` of every layer (symmetric int8, one scale per gate
  row), i.e. both gate matmuls run on int8 weights and the input one on int8 activations.

The recurrent ``h`` inside the kernel stays float: quantizing it per frame needs a time loop in the
graph. Quantizing it only at chunk boundaries (the state ports) would make streaming differ from
offline, so the state ports stay float32 too. Exported with the TorchScript exporter, the twin
becomes ``QuantizeLinear/DequantizeLinear`` around an ONNX ``LSTM`` with a dynamic time axis and
the float model's state ports; :func:`stateport.quantize.onnx_graph.fold_weight_quantize` then
stores the weights as int8.
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F
from torch import nn

INT8_MIN, INT8_MAX = -128, 127

# While True, frozen twins call torch's fake-quantize ops (the ONNX exporter turns them into
# QuantizeLinear/DequantizeLinear). Otherwise they compute the ONNX QuantizeLinear definition
# itself, round(x / scale): torch's fake quantize multiplies by 1/scale, which rounds the other
# way on exact ties (measured: a 1.3e-3 logit step at one frame of five seconds).
_EXPORTING = False


@contextlib.contextmanager
def export_mode():
    """Frozen twins emit fake-quantize ops (for the exporter) inside this block."""
    global _EXPORTING
    old, _EXPORTING = _EXPORTING, True
    try:
        yield
    finally:
        _EXPORTING = old


def onnx_fake_quant(x: torch.Tensor, scale, zero_point, axis: int | None = None) -> torch.Tensor:
    """``DequantizeLinear(QuantizeLinear(x))`` exactly as ONNX defines it: round half to even of x / scale."""
    if axis is not None:
        shape = [1] * x.dim()
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape).to(x.dtype)
    q = torch.clamp(torch.round(x / scale) + zero_point, INT8_MIN, INT8_MAX)
    return (q - zero_point) * scale


def _torchao():
    from ..errors import MissingDependencyError

    try:
        from torchao.quantization.pt2e import (FusedMovingAvgObsFakeQuantize, MovingAverageMinMaxObserver)
    except ImportError:
        raise MissingDependencyError("QAT needs torchao: pip install 'stateport[quantize]'") from None
    return FusedMovingAvgObsFakeQuantize, MovingAverageMinMaxObserver


class ActivationQuant(nn.Module):
    """Per-tensor affine int8 fake quantization of an op input; frozen: constant scale/zero point.

    Training: torchao's fused moving-average observer + fake quantize. Frozen: the plain
    ``fake_quantize_per_tensor_affine`` with Python constants, which the ONNX exporter writes as a
    QuantizeLinear/DequantizeLinear pair.
    """

    def __init__(self):
        super().__init__()
        fused, observer = _torchao()
        self.fake_quant = fused(observer=observer, quant_min=INT8_MIN, quant_max=INT8_MAX, dtype=torch.qint8,
                                qscheme=torch.per_tensor_affine)
        self.frozen = False
        self.scale, self.zero_point = 1.0, 0

    def forward(self, x):
        if self.frozen and _EXPORTING:
            return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, INT8_MIN, INT8_MAX)
        if self.frozen:
            return onnx_fake_quant(x, torch.tensor(self.scale, dtype=x.dtype),
                                   torch.tensor(float(self.zero_point), dtype=x.dtype))
        return self.fake_quant(x)

    def disable_observer(self) -> None:
        self.fake_quant.disable_observer()

    def freeze(self) -> None:
        scale, zero_point = self.fake_quant.calculate_qparams()
        self.scale, self.zero_point = float(scale.reshape(-1)[0]), int(zero_point.reshape(-1)[0])
        self.frozen = True

    def extra_repr(self) -> str:
        return f"frozen={self.frozen}, scale={self.scale:.4g}, zero_point={self.zero_point}" if self.frozen else ""


def _load_float(twin: nn.Module, float_module: nn.Module) -> None:
    """Copy the float module's parameters; only the twin's own observer buffers stay as they are."""
    missing, unexpected = twin.load_state_dict(float_module.state_dict(), strict=False)
    if unexpected or any(not k.startswith("input_quant.") for k in missing):
        raise RuntimeError(f"QAT twin of {type(float_module).__name__} does not match: missing {missing}, "
                           f"unexpected {unexpected}")


def weight_fake_quant(w: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric int8 per output row (axis 0) with a straight-through gradient.

    The range is [-127, 127] (scale = absmax / 127); ONNX only accepts the quant range (-128, 127),
    which represents the same values because |w / scale| <= 127 never reaches -128.
    """
    frozen = scale is not None
    if scale is None:
        scale = (w.detach().abs().amax(dim=tuple(range(1, w.dim()))) / INT8_MAX).clamp_min(1e-12)
    zero = torch.zeros(scale.shape, dtype=torch.int32)
    if frozen and not _EXPORTING:
        return onnx_fake_quant(w, scale, zero, axis=0)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, INT8_MIN, INT8_MAX)


class QatLinear(nn.Linear):
    """nn.Linear whose input and weight are fake-quantized int8 (same parameter names)."""

    @classmethod
    def from_float(cls, linear: nn.Linear) -> "QatLinear":
        q = cls(linear.in_features, linear.out_features, bias=linear.bias is not None)
        _load_float(q, linear)
        return q

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.input_quant = ActivationQuant()
        self.weight_scale = None

    def freeze(self) -> None:
        self.input_quant.freeze()
        self.weight_scale = (self.weight.detach().abs().amax(1) / INT8_MAX).clamp_min(1e-12)

    def forward(self, x):
        return F.linear(self.input_quant(x), weight_fake_quant(self.weight, self.weight_scale), self.bias)


class QatLSTM(nn.LSTM):
    """nn.LSTM (batch_first, unidirectional) with fake-quantized input and gate weights.

    Same parameters, ``num_layers``/``hidden_size`` and call signature as the float LSTM, so a
    StreamingLSTM wrapping it keeps its state ports ``h``/``c`` [num_layers, B, H].
    """

    @classmethod
    def from_float(cls, lstm: nn.LSTM) -> "QatLSTM":
        from ..errors import UnsupportedError

        if lstm.bidirectional or lstm.proj_size or not lstm.batch_first:
            raise UnsupportedError("QAT supports unidirectional batch_first LSTMs without projections")
        q = cls(lstm.input_size, lstm.hidden_size, lstm.num_layers, bias=lstm.bias, batch_first=True,
                dropout=lstm.dropout)
        _load_float(q, lstm)
        return q

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.input_quant = ActivationQuant()
        self.weight_scales = None

    def freeze(self) -> None:
        self.input_quant.freeze()
        self.weight_scales = [None if w.dim() != 2 else (w.detach().abs().amax(1) / INT8_MAX).clamp_min(1e-12)
                              for w in self._flat_weights]

    def forward(self, x, hx):
        scales = self.weight_scales or [None] * len(self._flat_weights)
        weights = [weight_fake_quant(w, s) if w.dim() == 2 else w for w, s in zip(self._flat_weights, scales)]
        # torch.lstm(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first)
        y, h, c = torch.lstm(self.input_quant(x), hx, weights, self.bias, self.num_layers, float(self.dropout),
                             self.training, False, True)
        return y, (h, c)


QAT_TWINS = {nn.LSTM: QatLSTM, nn.Linear: QatLinear}


def make_qat_model(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """A deep copy of ``model`` with every nn.Linear / nn.LSTM replaced by its QAT twin.

    Returns the copy and the module paths that were replaced. Parameters keep their names, so
    the float checkpoint's state_dict loads into the copy (plus the observers' buffers).
    """
    qat = copy.deepcopy(model)
    replaced = []
    for path, module in list(qat.named_modules()):
        for name, child in list(module.named_children()):
            twin = QAT_TWINS.get(type(child))
            if twin is not None:
                setattr(module, name, twin.from_float(child))
                replaced.append(f"{path}.{name}" if path else name)
    order = [name for name, _ in model.named_modules()]
    return qat, sorted(replaced, key=order.index)


def qat_modules(model: nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, (QatLinear, QatLSTM))]


def disable_observers(model: nn.Module) -> None:
    """Stop updating activation ranges (weights keep training against the frozen ranges)."""
    for m in model.modules():
        if isinstance(m, ActivationQuant):
            m.disable_observer()


def freeze(model: nn.Module) -> nn.Module:
    """Fix every scale/zero point as a constant: a deterministic, exportable QDQ model (eval mode)."""
    for m in qat_modules(model):
        m.freeze()
    return model.eval()


def quantization_points(model: nn.Module) -> dict:
    """Module path -> frozen input scale/zero point (for the card and the report)."""
    out = {}
    for path, m in model.named_modules():
        if isinstance(m, (QatLinear, QatLSTM)) and m.input_quant.frozen:
            out[path] = {"input_scale": m.input_quant.scale, "input_zero_point": m.input_quant.zero_point,
                         "weights": "int8 symmetric per output row"}
    return out
