"""``dscnn-kws``: a streaming depthwise-separable CNN keyword spotter (Hello Edge DS-CNN style).

DS-CNN (Zhang et al. 2017, "Hello Edge") classifies a 1 s window of features with a 2-D conv
over time x frequency, depthwise-separable 2-D conv layers, average pooling and a linear
classifier. Here it is made streaming, so it emits class posteriors for every frame:

- every conv is causal in time (stride 1 in time: no subsampling, any chunk length works);
  frequency keeps its ordinary, non-causal padding and the first layer's stride 2, because
  the whole frequency axis of each frame is available at once;
- time dilations (1, 2, 4, ...) widen the context cheaply, and the global average pool
  becomes a causal moving average over the last ``pool_frames`` frames, chosen so that one
  output frame sees exactly ``window_frames`` input frames (1 s at the default);
- every time-context layer is a :class:`~stateport.nn.StreamingLayer` whose state is its
  left-padding buffer; the model finds them by itself (``state_decls``).

Input: 40 log-mel bins per 10 ms frame (Kaldi fbank, 25 ms windows): ``features`` [B, T, 40].
Output: ``logits`` [B, T, 12], output kind "classifier", one row of class scores per frame.

Classes (:data:`KWS_CLASSES`): ``_background_`` (silence/noise), ``_unknown_`` (speech that is
no keyword), then the ten spoken digits ``zero`` .. ``nine`` — the Speech Commands convention
of silence + unknown + keywords, over the digit words the built-in training data has.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import InvalidInputError
from ..nn import CausalConv1d, LeftContextConv, StreamingLayer, StreamingModule
from ..vocabulary import DIGIT_WORDS
from .common import FeatureNorm, fbank_frontend
from .registry import register
from .routing import StateRouter

KWS_CLASSES = ["_background_", "_unknown_", *DIGIT_WORDS]
"""Class names, index = class id: background, unknown speech, then the spoken digits."""


class CausalConv2d(LeftContextConv):
    """2-D conv causal in time. x [B, C_in, T, F_in] -> y [B, C_out, T, F_out].

    Time: stride 1, dilation ``time_dilation``, left padding only. Frequency: ordinary conv
    with ``freq_stride`` and ``freq_padding`` (each frame's whole spectrum is present).
    State: ``buf`` [B, C_in, (time_kernel - 1) * time_dilation, F_in], the last input frames
    (zeros at the start of a stream: exactly the offline zero padding). ``freq_bins`` (F_in) is
    fixed at construction because the state shape declares it.
    """

    def __init__(self, in_channels: int, out_channels: int, *, time_kernel: int, freq_kernel: int, freq_bins: int,
                 time_dilation: int = 1, freq_stride: int = 1, freq_padding: int = 0, groups: int = 1,
                 bias: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, (time_kernel, freq_kernel), stride=(1, freq_stride),
                              padding=(0, freq_padding), dilation=(time_dilation, 1), groups=groups, bias=bias)
        self.freq_bins = freq_bins
        self.context_frames = (time_kernel - 1) * time_dilation
        self.out_freq_bins = (freq_bins + 2 * freq_padding - freq_kernel) // freq_stride + 1
        if self.out_freq_bins < 1:
            raise InvalidInputError(f"a frequency kernel of {freq_kernel} does not fit {freq_bins} bins")

    state_description = "left-padding buffer: the last input frames, all frequency bins"

    @property
    def extra_state_dims(self) -> tuple:
        return (self.freq_bins,)


class DepthwiseSeparable2d(StreamingLayer):
    """DS-CNN layer: depthwise 3x3 (causal, dilated in time) -> BN -> ReLU -> pointwise 1x1 -> BN -> ReLU.

    x [B, C, T, F] -> y [B, C_out, T, F]. State: the depthwise conv's ``buf`` [B, C, 2 * dilation, F].
    """

    def __init__(self, in_channels: int, out_channels: int, *, freq_bins: int, time_dilation: int):
        super().__init__()
        self.depthwise = CausalConv2d(in_channels, in_channels, time_kernel=3, freq_kernel=3, freq_bins=freq_bins,
                                      time_dilation=time_dilation, freq_padding=1, groups=in_channels, bias=False)
        self.depthwise_norm = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pointwise_norm = nn.BatchNorm2d(out_channels)

    @property
    def context_frames(self) -> int:
        return self.depthwise.context_frames

    def state_decls(self):
        return self.depthwise.state_decls()

    def step(self, x, *state):
        y, *new_state = self.depthwise.step(x, *state)
        y = torch.relu(self.depthwise_norm(y))
        return (torch.relu(self.pointwise_norm(self.pointwise(y))), *new_state)


def moving_average(channels: int, frames: int) -> CausalConv1d:
    """Causal mean over the last ``frames`` frames per channel: [B, C, T] -> [B, C, T].

    A depthwise conv with fixed weights 1/frames (frozen: the streaming form of DS-CNN's
    global average pool). Its left-padding buffer holds the previous frames; at the start of a
    stream those are zeros, as in the offline zero-padded forward.
    """
    pool = CausalConv1d(channels, channels, frames, groups=channels, bias=False)
    with torch.no_grad():
        pool.conv.weight.fill_(1.0 / frames)
    pool.conv.weight.requires_grad_(False)
    return pool


@register("dscnn-kws", description="streaming DS-CNN keyword spotter over 40-dim log-mel: per-frame "
                                   "posteriors over a 1 s window",
          sizes={"tiny": {"channels": 16, "stem_time_kernel": 3, "time_dilations": [1, 2], "window_frames": 40},
                 "default": {"channels": 64, "stem_time_kernel": 10, "time_dilations": [1, 2, 4, 8],
                             "window_frames": 100}})
class DsCnnKws(StreamingModule):
    """x [B, T, F] log-mel -> logits [B, T, num_classes], one row per frame.

    Output frame t depends on input frames ``t - window_frames + 1 .. t`` (``window_frames`` of
    10 ms each: the default 100 is the 1 s window of the original DS-CNN). States: ``stem_buf``
    [B, 1, k - 1, F], ``layers_<i>_buf`` [B, C, 2 * d_i, F / 2], ``pool_buf`` [B, C, pool - 1].
    """

    input_name = "features"
    output_names = ("logits",)

    def __init__(self, *, channels: int, stem_time_kernel: int, time_dilations: list, window_frames: int,
                 stem_freq_kernel: int = 4, input_dim: int = 40, classes: list | None = None,
                 frames_per_step: int = 16):
        super().__init__()
        dilations = list(time_dilations)
        if not dilations or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in dilations):
            raise InvalidInputError(f"dscnn-kws time_dilations must be positive integers, got {time_dilations!r}")
        self.classes = list(classes or KWS_CLASSES)
        self.input_dim = input_dim
        self.window_frames = int(window_frames)

        self.norm = FeatureNorm(input_dim)
        # Hello Edge's first layer: 10 x 4 (time x frequency), stride 2 over frequency only.
        self.stem = CausalConv2d(1, channels, time_kernel=stem_time_kernel, freq_kernel=stem_freq_kernel,
                                 freq_bins=input_dim, freq_stride=2, freq_padding=(stem_freq_kernel - 1) // 2)
        self.stem_norm = nn.BatchNorm2d(channels)
        bins = self.stem.out_freq_bins
        self.layers = nn.ModuleList(DepthwiseSeparable2d(channels, channels, freq_bins=bins, time_dilation=d)
                                    for d in dilations)
        conv_context = self.stem.context_frames + sum(layer.context_frames for layer in self.layers)
        pool_frames = self.window_frames - conv_context
        if pool_frames < 1:
            raise InvalidInputError(f"dscnn-kws window_frames={window_frames} is shorter than the convolutions' "
                                    f"own context ({conv_context + 1} frames)")
        self.pool = moving_average(channels, pool_frames)
        self.classifier = nn.Linear(channels, len(self.classes))
        self._init_weights()

        s = self.streaming
        s.frames_per_step = frames_per_step
        s.frontend = fbank_frontend(input_dim)
        s.output_kind, s.output_port = "classifier", "logits"
        s.vocabulary, s.blank_id = self.classes, None

    def _init_weights(self) -> None:
        """He initialisation of the convs (each feeds BN + ReLU), so activations keep their scale.

        With torch's default init the untrained output varied by 1e-4 over time (frequency
        mean and the moving average smooth the rest away): too little for a parity check at
        1e-4 to tell a wrong state from a right one. The pool's fixed weights stay as they are.
        """
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")

    @property
    def receptive_field_frames(self) -> int:
        """Frames of input (this one included) that one output frame depends on."""
        return 1 + sum(layer.context_frames for _, layer in self.streaming_layers())

    def step(self, x, *state):
        """x [B, T, F] + one buffer per time-context layer -> (logits [B, T, classes], *new buffers)."""
        route = StateRouter(self, state)
        y = self.norm(x).unsqueeze(1)  # [B, 1, T, F]: one input channel, as in the 2-D original
        y = torch.relu(self.stem_norm(route(self.stem, y)))
        for layer in self.layers:
            y = route(layer, y)
        y = route(self.pool, y.mean(dim=3))  # [B, C, T]: frequency pooled, then the sliding time window
        return (self.classifier(y.transpose(1, 2)), *route.new_state())
