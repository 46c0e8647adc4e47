"""Google's pretrained speech embedding as a torch module, with its weights shipped in the package.

The model (Lin et al., "Training Keyword Spotters with Limited and Synthesized Speech Data",
ICASSP 2020; TF Hub ``google/speech_embedding/1``, Apache-2.0) maps 76 frames of 32-bin
log-mel (760 ms) to a 96-dim embedding. It was trained on a very large corpus of real speech,
and a small classifier on top of it generalises to unseen speakers from a handful of real
speakers or from synthetic speech alone, which is exactly what our digit recogniser lacks:
four FSDD speakers. Its weights come from openWakeWord 0.5.1's ``embedding_model.onnx``
(openWakeWord re-implemented the TF Hub module layer by layer; the feature models are
Apache-2.0, unlike its wake-word models), converted once by::

    python -m stateport.zoo.speech_embedding openwakeword-0.5.1-py3-none-any.whl

into ``stateport/assets/speech_embedding/weights.npz`` (1.3 MB), so training and export need
neither openWakeWord nor a download. ``NOTICE.md`` beside the weights keeps the attribution.

Input: Google's features, ``log10(mel power) + 2`` with librosa's Slaney mel filters
(60-3800 Hz, 32 bins), a periodic 400-sample hann window in a 512-point FFT, 10 ms hop, on
int16-scale samples. The runtime frontend computes exactly these (natural log) with
``FrontendConfig(mel_filters="slaney", window="hann-periodic", ...)``: :data:`FRONTEND` here;
:func:`google_log_mel` turns natural log into Google's scale. Measured on FSDD recordings the
two agree to float rounding once the 56-sample offset of Google's window inside its FFT frame
is accounted for, except where Google's frontend floors a frame at 80 dB below the loudest
frame of its input: that floor depends on the whole input, which a stream never has, so we
leave it out (it only touches near-digital-silence).

Layout: 19 blocks of conv (3x3, then alternating 1x3 over frequency and 3x1 over time; the
batch norms are already folded into the convs) -> LeakyReLU(0.2) -> max(., -0.4), five max
pools, then a 3x1 conv without bias to ``[N, 96, 1, 1]``. Time is never padded, so the 76
input frames shrink to one output: the embedding of a window is a pure function of it.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import nn

from ..errors import InvalidInputError

WINDOW_FRAMES = 76  # log-mel frames per embedding (760 ms)
MEL_BINS = 32
EMBEDDING_DIM = 96
LEAKY_SLOPE = 0.2
ACTIVATION_FLOOR = -0.4  # the TF model's tf.math.maximum after every LeakyReLU
WINDOWS_PER_CALL = 16  # eager CPU runs take the windows in groups: measured ~2x faster than hundreds at once

# (kernel over time, kernel over frequency, out channels) of convs 0..18, and where the pools
# (time, frequency) come after a conv. Conv 19 (3x1, 96, no bias, no activation) ends it.
_CONVS = [(3, 3, 24), (1, 3, 24), (3, 1, 24),
          (1, 3, 48), (3, 1, 48), (1, 3, 48), (3, 1, 48),
          (1, 3, 72), (3, 1, 72), (1, 3, 72), (3, 1, 72),
          (1, 3, 96), (3, 1, 96), (1, 3, 96), (3, 1, 96),
          (1, 3, 96), (3, 1, 96), (1, 3, 96), (3, 1, 96)]
_POOL_AFTER = {2: (2, 2), 6: (1, 2), 10: (2, 2), 14: (1, 2), 18: (2, 2)}
HOP_FRAMES = math.prod(t for t, _ in _POOL_AFTER.values())  # the network's time stride: one embedding per 8 frames

WEIGHTS_PATH = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "speech_embedding",
                            "weights.npz")


def frontend_config():
    """The runtime frontend that computes this model's input (natural-log Slaney log-mel)."""
    from ..runtime.frontend import FrontendConfig

    return FrontendConfig(kind="fbank", sample_rate_hz=16000, num_mel_bins=MEL_BINS, low_freq_hz=60.0,
                          high_freq_hz=3800.0, window="hann-periodic", mel_filters="slaney", preemphasis=0.0,
                          remove_dc_offset=False, input_scale=32767.0)


def google_log_mel(natural_log_mel: torch.Tensor) -> torch.Tensor:
    """Natural-log mel power -> Google's input scale ``10 log10(P) / 10 + 2`` (openWakeWord's
    transform, which it found brings its ONNX frontend closest to the TF Hub module)."""
    return natural_log_mel * (1.0 / math.log(10.0)) + 2.0


class SpeechEmbedding(nn.Module):
    """``[N, 76, 32]`` Google log-mel windows -> ``[N, 96]`` embeddings (pure function of a window)."""

    def __init__(self):
        super().__init__()
        convs, in_channels = [], 1
        for k_time, k_freq, out_channels in _CONVS:
            convs.append(nn.Conv2d(in_channels, out_channels, (k_time, k_freq), padding=(0, k_freq // 2)))
            in_channels = out_channels
        self.convs = nn.ModuleList(convs)
        self.last = nn.Conv2d(in_channels, EMBEDDING_DIM, (3, 1), bias=False)
        # Channels-last weights: measured 1.7x faster on x86 CPU (oneDNN's native layout; no
        # reorder per conv). Loading a state dict keeps the layout; the export is unaffected.
        self.to(memory_format=torch.channels_last)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_tracing() or windows.shape[0] <= WINDOWS_PER_CALL:  # an export traces one call
            return self._embed(windows)
        return torch.cat([self._embed(part) for part in windows.split(WINDOWS_PER_CALL)])

    # The network in three pieces, which a quantization twin overrides and both the window
    # computation and the streaming one compose: the input, block i (conv, activation, pool), the last conv.
    def _input(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def _block(self, i: int, x: torch.Tensor) -> torch.Tensor:
        x = torch.clamp_min(nn.functional.leaky_relu(self.convs[i](x), LEAKY_SLOPE), ACTIVATION_FLOOR)
        return nn.functional.max_pool2d(x, _POOL_AFTER[i]) if i in _POOL_AFTER else x

    def _last(self, x: torch.Tensor) -> torch.Tensor:
        return self.last(x)

    def _joined(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Block ``i``'s input in a stream, its context joined to the new frames (the first block: the input)."""
        return self._input(x) if i == 0 else x

    def _embed(self, windows: torch.Tensor) -> torch.Tensor:
        x = self._input(windows.unsqueeze(1))  # [N, 1, time, freq]
        for i in range(len(self.convs)):
            x = self._block(i, x)
        return self._last(x).flatten(1)

    # ------------------------------------------------------------------ streaming
    # The network is fully convolutional over time: convs are valid (unpadded) in time and the
    # three time pools of 2 make a stride of 8, so over a continuous stream of frames its output
    # at every 8th frame is the embedding of the 76-frame window ending there, and the pools of
    # consecutive windows line up. A stream therefore keeps, for each conv that reaches back in
    # time, the last ``k - 1`` frames of its input ("context"), and computes only the new frames:
    # an 8-frame hop costs about a sixth of a whole window (measured, docs/runtime.md).
    def context_shapes(self) -> list[tuple[str, tuple[int, int, int]]]:
        """``(name, (channels, frames, freq bins))`` of each context a stream keeps, in order: the input
        of every conv with a time kernel above 1 (``conv<i>``, and ``last``)."""
        shapes, channels, freq = [], 1, MEL_BINS
        for i, conv in enumerate([*self.convs, self.last]):
            k_time = conv.kernel_size[0]
            if k_time > 1:
                shapes.append((f"conv{i}" if i < len(self.convs) else "last", (channels, k_time - 1, freq)))
            channels = conv.out_channels
            freq //= _POOL_AFTER.get(i, (1, 1))[1]
        return shapes

    def stream(self, frames: torch.Tensor, contexts) -> tuple[torch.Tensor, list]:
        """Google log-mel ``[B, 8 k, 32]`` after the frames the ``contexts`` hold -> the embeddings ``[B, k, 96]``
        of the ``k`` windows ending at each 8-frame group, and the new contexts. The first context is of
        input frames ``[B, 1, 2, 32]``, before :meth:`_input`."""
        contexts, new = iter(contexts), []
        x = frames.unsqueeze(1)  # [B, 1, time, freq]
        fewest = HOP_FRAMES  # the fewest new frames a block sees: a chunk is a multiple of the stride
        for i, conv in enumerate([*self.convs, self.last]):
            k_time = conv.kernel_size[0]
            if k_time > 1:
                context = next(contexts)
                # The new context is sliced from the new frames where a chunk always brings enough
                # of them, else from a Concat of its own; never from the conv's input, whose only
                # consumer must be the conv for ONNX Runtime's int8 fusion (DequantizeLinear -> Conv
                # -> QLinearConv; slicing it left these convs float: measured 11 of 20). (The same
                # Concat twice would be merged by the exporter; the context's first frame is never kept.)
                joined_new = x if fewest >= k_time - 1 else torch.cat([context[:, :, 1:], x], dim=2)
                new.append(joined_new[:, :, -(k_time - 1):])
                x = self._joined(i, torch.cat([context, x], dim=2))
            elif i == 0:
                x = self._input(x)
            x = self._block(i, x) if i < len(self.convs) else self._last(x)
            fewest //= _POOL_AFTER.get(i, (1, 1))[0]
        return x.squeeze(3).transpose(1, 2), new  # [B, 96, k, 1] -> [B, k, 96]

    @torch.no_grad()
    def steady_contexts(self, frame_value: float, *, pieces=None) -> list[torch.Tensor]:
        """The contexts ``[1, channels, frames, freq]`` after a whole window of frames all equal to
        ``frame_value`` (Google scale): constant over time at every layer, since the convs are valid in
        time (the first is ``frame_value`` itself). ``pieces``: ``(input, block)`` functions to compute
        them with instead of this module's."""
        input_fn, block_fn = pieces or (self._input, self._block)
        w = self.last.weight
        x = torch.full((1, 1, WINDOW_FRAMES, MEL_BINS), float(frame_value), dtype=w.dtype, device=w.device)
        out = []
        for i, conv in enumerate([*self.convs, self.last]):
            if conv.kernel_size[0] > 1:
                out.append(x[:, :, :conv.kernel_size[0] - 1].contiguous())
            if i == 0:
                x = input_fn(x)
            if i < len(self.convs):
                x = block_fn(i, x)
        return out

    def load_pretrained(self, path: str = WEIGHTS_PATH) -> "SpeechEmbedding":
        """Copy the shipped pretrained weights in (``weights.npz``: conv<i>.weight/.bias, last.weight)."""
        if not os.path.isfile(path):
            raise InvalidInputError(f"pretrained speech-embedding weights not found at {path!r}; expected the "
                                    "file 'python -m stateport.zoo.speech_embedding WHEEL' writes")
        with np.load(path) as data:
            state = {k: torch.from_numpy(data[k]) for k in data.files}
        own = self.state_dict()
        if set(state) != set(own) or any(state[k].shape != own[k].shape for k in own):
            raise InvalidInputError(f"{path!r} does not hold the speech-embedding weights this module expects")
        self.load_state_dict(state)
        return self


# ----------------------------------------------------------------------------------- conversion
def weights_from_onnx(onnx_path: str) -> dict:
    """openWakeWord's ``embedding_model.onnx`` -> {name: float32 array} for :class:`SpeechEmbedding`.

    Reads the convs in graph order and checks each one's kernel against the layout above, so a
    different model is refused rather than half-loaded.
    """
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(onnx_path).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    expected = [(kt, kf) for kt, kf, _ in _CONVS] + [(3, 1)]
    if len(convs) != len(expected):
        raise InvalidInputError(f"{onnx_path!r} has {len(convs)} convs; the speech embedding has {len(expected)}")
    out = {}
    for i, (node, kernel) in enumerate(zip(convs, expected)):
        weight = inits[node.input[1]].astype(np.float32)
        if tuple(weight.shape[2:]) != kernel:
            raise InvalidInputError(f"conv {i} of {onnx_path!r} has kernel {weight.shape[2:]}, expected {kernel}")
        prefix = "last" if i == len(_CONVS) else f"convs.{i}"
        out[f"{prefix}.weight"] = weight
        if len(node.input) > 2:
            out[f"{prefix}.bias"] = inits[node.input[2]].astype(np.float32)
    return out


def _onnx_from_wheel(wheel_path: str, folder: str) -> str:
    import zipfile

    member = "openwakeword/resources/models/embedding_model.onnx"
    with zipfile.ZipFile(wheel_path) as wheel:
        if member not in wheel.namelist():
            raise InvalidInputError(f"{wheel_path!r} has no {member}; use openwakeword 0.5.1's wheel "
                                    "(later wheels download their models instead of shipping them)")
        return wheel.extract(member, folder)


def main(argv=None) -> None:
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description="Convert openWakeWord's speech-embedding ONNX model (or the "
                                             "openwakeword 0.5.1 wheel holding it) into stateport's weights file.")
    ap.add_argument("source", help="embedding_model.onnx, or openwakeword-0.5.1-py3-none-any.whl")
    ap.add_argument("-o", "--output", default=WEIGHTS_PATH)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = _onnx_from_wheel(args.source, tmp) if args.source.endswith(".whl") else args.source
        weights = weights_from_onnx(onnx_path)
    SpeechEmbedding().load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})  # shape check
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    np.savez_compressed(args.output, **weights)
    print(f"wrote {args.output} ({len(weights)} arrays)")


__all__ = ["SpeechEmbedding", "frontend_config", "google_log_mel", "weights_from_onnx", "WINDOW_FRAMES",
           "MEL_BINS", "EMBEDDING_DIM"]


if __name__ == "__main__":
    main()
