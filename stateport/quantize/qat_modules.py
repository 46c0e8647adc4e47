"""QAT-friendly twins of nn.Linear, nn.LSTM, nn.Conv1d/2d and the speech embedding: fake-quantized where
ONNX Runtime's int8 kernels will compute, same parameters, same state.

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

Convolutions (:class:`QatConv`): input, weight (per output channel) and *output* are fake-quantized:
ONNX Runtime fuses ``DequantizeLinear -> Conv -> QuantizeLinear`` into QLinearConv only with the
output quantizer there; without it the conv would run in float on dequantized weights.

The speech embedding (:class:`QatSpeechEmbedding`, the built-in model's frozen convolutions) has its
quantizers where ONNX Runtime's static quantizer puts them, so the export runs int8 end to end
(QLinearConv -> int8 MaxPool -> QLinearLeakyRelu, measured in docs/quantization.md): each block's conv
output, and each block's output after ``max(leaky_relu(.), -0.4)`` with a grid whose lowest level is
exactly -0.4 (:func:`~stateport.quantize.onnx_graph.floor_anchored_qparams`), so the clamp *is* the
quantizer's saturation and ONNX Runtime drops it (ClipQuantFusion). Its weights stay frozen: only
the ranges are learnt (moving-average observers on the QAT batches), and the head trains against
the quantized embeddings.
"""

from __future__ import annotations

import contextlib
import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.protocol import StreamingLayer

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

    def forward(self, x, observe: bool = True):
        """``observe=False``: quantize with the current scale without updating the range (a repeat)."""
        if self.frozen and _EXPORTING:
            return torch.fake_quantize_per_tensor_affine(x, self.scale, self.zero_point, INT8_MIN, INT8_MAX)
        if self.frozen:
            return onnx_fake_quant(x, torch.tensor(self.scale, dtype=x.dtype),
                                   torch.tensor(float(self.zero_point), dtype=x.dtype))
        if not observe:
            fq = self.fake_quant
            return torch.fake_quantize_per_tensor_affine(x, fq.scale, fq.zero_point.to(torch.int32), INT8_MIN, INT8_MAX)
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
    own = tuple(f"{name}." for name, m in twin.named_modules() if isinstance(m, (ActivationQuant, FloorActivationQuant)))
    if unexpected or any(not k.startswith(own) for k in missing):
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


class QatConv(nn.Module):
    """Mixin of the conv twins: fake-quantized input, weight (int8 symmetric per output channel) and output."""

    @classmethod
    def from_float(cls, conv):
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                dilation=conv.dilation, groups=conv.groups, bias=conv.bias is not None, padding_mode=conv.padding_mode)
        _load_float(q, conv)
        q.requires_grad_(conv.weight.requires_grad)
        return q

    def _init_quant(self):
        self.input_quant = ActivationQuant()
        self.output_quant = ActivationQuant()
        self.weight_scale = None

    def freeze(self) -> None:
        self.input_quant.freeze()
        self.output_quant.freeze()
        self.weight_scale = _weight_scale(self.weight)

    def forward(self, x):
        w = weight_fake_quant(self.weight, self.weight_scale)
        return self.output_quant(self._conv_forward(self.input_quant(x), w, self.bias))


class QatConv1d(QatConv, nn.Conv1d):
    def __init__(self, *args, **kw):
        nn.Conv1d.__init__(self, *args, **kw)
        self._init_quant()


class QatConv2d(QatConv, nn.Conv2d):
    def __init__(self, *args, **kw):
        nn.Conv2d.__init__(self, *args, **kw)
        self._init_quant()


def _weight_scale(w: torch.Tensor) -> torch.Tensor:
    return (w.detach().abs().amax(dim=tuple(range(1, w.dim()))) / INT8_MAX).clamp_min(1e-12)


class FloorActivationQuant(nn.Module):
    """int8 fake quantization of a tensor clamped below at ``floor`` (< 0): the grid's lowest level is ``floor``.

    The observer (torchao's moving-average min/max) learns the upper end; scale and zero point come
    from :func:`~stateport.quantize.onnx_graph.floor_anchored_qparams`, in training and frozen alike.
    """

    def __init__(self, floor: float):
        super().__init__()
        _, observer = _torchao()
        self.observer = observer(quant_min=INT8_MIN, quant_max=INT8_MAX, dtype=torch.qint8)
        self.floor, self.observing, self.frozen = float(floor), True, False
        self.scale, self.zero_point = 1.0, 0

    def _qparams(self) -> tuple[float, int]:
        from .onnx_graph import floor_anchored_qparams

        high = float(self.observer.max_val) if self.observer.max_val.numel() else 0.0
        anchored = floor_anchored_qparams(self.floor, max(high, 1e-6))
        if anchored is None:  # a range 255x the floor: the grid cannot start at the floor
            raise RuntimeError(f"activation range {high:.4g} is too wide for an int8 grid anchored at {self.floor}")
        return float(anchored[0]), int(anchored[1])

    def forward(self, x, observe: bool = True):
        """``observe=False``: quantize with the current range without updating it (a repeat)."""
        if self.frozen and not _EXPORTING:
            return onnx_fake_quant(x, torch.tensor(self.scale, dtype=x.dtype),
                                   torch.tensor(float(self.zero_point), dtype=x.dtype))
        if not self.frozen and self.observing and observe:
            self.observer(x.detach())
        scale, zero_point = (self.scale, self.zero_point) if self.frozen else self._qparams()
        return torch.fake_quantize_per_tensor_affine(x, scale, zero_point, INT8_MIN, INT8_MAX)

    def disable_observer(self) -> None:
        self.observing = False

    def freeze(self) -> None:
        self.scale, self.zero_point = self._qparams()
        self.frozen = True


def _speech_embedding_type():
    from ..zoo.speech_embedding import SpeechEmbedding

    return SpeechEmbedding


class QatSpeechEmbedding(_speech_embedding_type()):
    """The speech embedding (:class:`stateport.zoo.speech_embedding.SpeechEmbedding`) with int8 quantizers where
    ONNX Runtime's int8 kernels run it (module docstring); frozen weights, same parameter names.

    float_input_layer: leave the first conv (on the log-mel input) in float, as ``static-int8`` can.
    """

    @classmethod
    def from_float(cls, embedding, *, float_input_layer: bool = False) -> "QatSpeechEmbedding":
        q = cls(float_input_layer=float_input_layer)
        _load_float(q, embedding)
        return q.requires_grad_(False)

    def __init__(self, *, float_input_layer: bool = False):
        super().__init__()
        from ..zoo.speech_embedding import ACTIVATION_FLOOR

        n = len(self.convs)
        self.float_input_layer = bool(float_input_layer)
        self.input_quant = ActivationQuant()
        self.conv_quant = nn.ModuleList(ActivationQuant() for _ in range(n))
        self.block_quant = nn.ModuleList(FloorActivationQuant(ACTIVATION_FLOOR) for _ in range(n))
        self.last_quant = ActivationQuant()
        self.weight_scales = None

    def _weight(self, i: int, conv) -> torch.Tensor:
        if self.float_input_layer and i == 0:
            return conv.weight
        return weight_fake_quant(conv.weight, None if self.weight_scales is None else self.weight_scales[i])

    # The pieces SpeechEmbedding composes (for whole windows and for streams), quantized.
    def _input(self, x):
        return x if self.float_input_layer else self.input_quant(x)

    def _block(self, i, x):
        from ..zoo.speech_embedding import _POOL_AFTER, ACTIVATION_FLOOR, LEAKY_SLOPE

        F = nn.functional
        conv = self.convs[i]
        y = self.conv_quant[i](conv._conv_forward(x, self._weight(i, conv), conv.bias))
        if i in _POOL_AFTER:
            # Pooling first is exact (max commutes with the monotonic activation and quantizer) and
            # keeps the pool on the conv's int8 output: ONNX Runtime's int8 MaxPool needs the same
            # quantizer on both sides, hence the repeat (values already on the grid stay put).
            y = self.conv_quant[i](F.max_pool2d(y, _POOL_AFTER[i]), observe=False)
        return self.block_quant[i](torch.clamp_min(F.leaky_relu(y, LEAKY_SLOPE), ACTIVATION_FLOOR))

    def _last(self, x):
        return self.last_quant(self.last._conv_forward(x, self._weight(len(self.convs), self.last), self.last.bias))

    def _joined(self, i, x):
        # A stream's context joined to the previous block's new output: both are on that block's grid, so
        # quantizing again changes no value, and ONNX Runtime then sees DequantizeLinear -> Conv and runs
        # QLinearConv (without it, the convs after a join stayed float: measured 10 of 20).
        return self._input(x) if i == 0 else self.block_quant[i - 1](x, observe=False)

    def steady_contexts(self, frame_value: float, *, pieces=None):
        """Quantized once the ranges are frozen; before, the float model's (the observers must not see it)."""
        if pieces is None and self.weight_scales is None:
            base = _speech_embedding_type()
            pieces = (lambda x: base._input(self, x), lambda i, x: base._block(self, i, x))
        return super().steady_contexts(frame_value, pieces=pieces)

    def freeze(self) -> None:
        for m in [self.input_quant, self.last_quant, *self.conv_quant, *self.block_quant]:
            m.freeze()
        self.weight_scales = [_weight_scale(c.weight) for c in [*self.convs, self.last]]


QAT_TWINS = {nn.LSTM: QatLSTM, nn.Linear: QatLinear, nn.Conv1d: QatConv1d, nn.Conv2d: QatConv2d}


def make_qat_model(model: nn.Module, *, float_input_layer: bool = False) -> tuple[nn.Module, list[str]]:
    """A deep copy of ``model`` with every nn.Linear / nn.LSTM / nn.Conv1d / nn.Conv2d replaced by its QAT
    twin, and every speech embedding by :class:`QatSpeechEmbedding` (``float_input_layer`` goes to it).

    Returns the copy and the module paths that were replaced. Parameters keep their names, so the
    float checkpoint's state_dict loads into the copy (plus the observers' buffers).
    """
    qat = copy.deepcopy(model)
    replaced, inside = [], []
    for path, module in list(qat.named_modules()):
        if any(path == p or path.startswith(p + ".") for p in inside):
            continue  # inside a module that was replaced whole
        for name, child in list(module.named_children()):
            where = f"{path}.{name}" if path else name
            if isinstance(child, _speech_embedding_type()):
                setattr(module, name, QatSpeechEmbedding.from_float(child, float_input_layer=float_input_layer))
            elif type(child) in QAT_TWINS:
                setattr(module, name, QAT_TWINS[type(child)].from_float(child))
            else:
                continue
            replaced.append(where)
            inside.append(where)
    order = [name for name, _ in model.named_modules()]
    return qat, sorted(replaced, key=order.index)


TWIN_TYPES = (QatLinear, QatLSTM, QatConv, QatSpeechEmbedding)


def qat_modules(model: nn.Module) -> list:
    return [m for m in model.modules() if isinstance(m, TWIN_TYPES)]


def disable_observers(model: nn.Module) -> None:
    """Stop updating activation ranges (weights keep training against the frozen ranges)."""
    for m in model.modules():
        if isinstance(m, (ActivationQuant, FloorActivationQuant)):
            m.disable_observer()


def freeze(model: nn.Module) -> nn.Module:
    """Fix every scale/zero point as a constant: a deterministic, exportable QDQ model (eval mode)."""
    for m in qat_modules(model):
        m.freeze()
    for m in model.modules():  # what streaming layers derive from their modules' function changed with it
        if isinstance(m, StreamingLayer):
            m.refresh()
    return model.eval()


def _point(q) -> dict:
    return {"scale": q.scale, "zero_point": q.zero_point}


def quantization_points(model: nn.Module) -> dict:
    """Module path -> its frozen activation quantizers' scale/zero point (for the card and the report)."""
    out = {}
    for path, m in model.named_modules():
        if isinstance(m, (QatLinear, QatLSTM)) and m.input_quant.frozen:
            out[path] = {"input_scale": m.input_quant.scale, "input_zero_point": m.input_quant.zero_point,
                         "weights": "int8 symmetric per output row"}
        elif isinstance(m, QatConv) and m.input_quant.frozen:
            out[path] = {"input": _point(m.input_quant), "output": _point(m.output_quant),
                         "weights": "int8 symmetric per output channel"}
        elif isinstance(m, QatSpeechEmbedding) and m.last_quant.frozen:
            out[path] = {"input": None if m.float_input_layer else _point(m.input_quant),
                         "conv_outputs": [_point(q) for q in m.conv_quant],
                         "block_outputs": [_point(q) for q in m.block_quant], "output": _point(m.last_quant),
                         "weights": "frozen; int8 symmetric per output channel"
                                    + ("; the first conv float" if m.float_input_layer else "")}
    return out
