"""Audio-in graphs: the card's frontend inside the model, what it carries between calls as state.

:class:`AudioInput` wraps a features-in :class:`StreamingModule` whose card names a Kaldi-style
frontend (``model.streaming.frontend``, a :class:`FrontendConfig` dict) and is itself an ordinary
streaming module, so every exporter, backend and proof takes it as it takes any other::

    audio [B, S] float32 in [-1, 1] at the frontend's rate          (any S >= 1: ragged, sub-frame)
      -> the samples kept from earlier calls + audio -> every frame now complete (snip_edges framing)
      -> TorchFrontend as matrix products (windowed DFT on the mel filters' bins, float64; mel; log)
      -> the frames kept from earlier calls + new frames -> the longest run the model takes
         (a multiple of ``frame_multiple``, at least ``min_frames``) -> model.step -> outputs

A client then needs only an ONNX runtime: no feature code in Kotlin, Swift or JavaScript.

State ports besides the model's own (a fixed size each, since edge runtimes want static state
shapes; a count says how much of a buffer is real):

- ``frontend_samples`` ``[B, L - 1]``: the last ``L - 1`` samples seen (right-aligned); the next
  frame starts among them. ``frontend_sample_count`` ``[B, 1]`` int64: how many of them have
  arrived since that frame's start (0 .. L - 1; every frame needs L).
- ``frontend_frames`` ``[B, P, F]`` and ``frontend_frame_count`` ``[B, 1]``: feature frames
  computed but not yet stepped (fewer than the model's smallest chunk, ``P`` = that chunk - 1),
  right-aligned; only when the model needs chunks of more than one frame.

A call whose audio completes no model step still runs the model once on a dummy chunk (there is
no control flow in a graph every runtime takes) and keeps the old state and an empty output:
feed chunks of about the nominal size (``streaming.frames_per_step`` samples) to not pay for it.

All streams of a batch must be in phase (fed the same number of samples so far): the counts are
read from the first stream, and their state ports are ``batch_uniform`` in the card, so a client
(``stateport.Recognizer.decode_streams``) batches only streams whose counts are equal. A batch of
streams fed the same chunk lengths always is. Why not per-stream counts: streams in other phases
complete different numbers of frames and output steps in one call, which a dense output tensor
cannot hold without padding and a per-stream count output beside it.

The offline reference (``forward``) is the features-in pipeline a client runs without this
module: Kaldi's features of the whole signal, computed as kaldi-native-fbank computes them but
with an exact FFT, then the wrapped model's ``forward`` on the frames that make whole model
steps. So the parity proof of an audio-in file compares the in-graph frontend, streamed in
ragged sample chunks, with Kaldi's recipe; how far knf's own float32 FFT moves the outputs is
measured beside it (``forward_runtime_frontend``) and written into the certificate's notes.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UnsupportedError
from ..runtime.frontend import FrontendConfig, compute_features
from ..spec import (AUDIO_IN_FRAME_COUNT_STATE, AUDIO_IN_FRAMES_STATE, AUDIO_IN_SAMPLE_COUNT_STATE,
                    AUDIO_IN_SAMPLES_STATE, BATCH_DIM, FRONTEND_IN_GRAPH, SAMPLE_DIM)
from .frontend import TorchFrontend, kaldi_reference_features
from .protocol import InputSpec, MultiGraphModule, StateDecl, StreamingModule

__all__ = ["AudioInput", "audio_input_problem"]

def audio_input_problem(model) -> str | None:
    """Why ``model`` cannot take audio in its graph, or None when it can."""
    if isinstance(model, MultiGraphModule):
        return (f"{type(model).__name__} is exported as several graphs (a transducer); only its encoder takes audio, "
                "and wrapping one graph of several is not offered")
    if not isinstance(model, StreamingModule):
        return f"{type(model).__name__} is not a StreamingModule"
    if isinstance(model, AudioInput):
        return "the model already takes audio"
    s = model.streaming
    if not s.frontend:
        return "its card names no frontend (model.streaming.frontend): it takes features the graph cannot compute"
    specs = model.input_specs()
    if len(specs) != 1 or specs[0].time_axis != 1 or len(specs[0].shape) != 3 or not specs[0].dtype.is_floating_point:
        return "it must have one float input [B, T, F] with the time axis 1"
    try:
        config = FrontendConfig.from_dict(s.frontend)
    except Exception as e:  # InvalidInputError from the config's own checks
        return f"its frontend cannot be computed: {e}"
    if not config.snip_edges:
        return ("its frontend uses snip_edges=False: the last frames mirror audio after the end of input, which a "
                "graph fed chunk by chunk cannot know")
    if specs[0].shape[2] != config.num_features:
        return f"its input has {specs[0].shape[2]} features per frame, its frontend computes {config.num_features}"
    if s.lookahead_frames:
        return f"it consumes {s.lookahead_frames} look-ahead frames per chunk that the next chunk repeats"
    if config.sample_rate_hz != s.sample_rate_hz or config.frame_shift_samples != s.frame_hop_samples:
        return (f"its frontend ({config.sample_rate_hz} Hz, hop {config.frame_shift_samples}) contradicts its "
                f"streaming config ({s.sample_rate_hz} Hz, hop {s.frame_hop_samples})")
    # A call keeps the output steps it completed: every output needs a time axis 1 of frames / subsampling.
    frames = max(s.frame_multiple, s.min_frames)
    frames += (-frames) % max(s.frame_multiple, 1)
    frames *= 2
    with torch.no_grad():
        out = model.step(torch.zeros(1, frames, config.num_features), *model.init_state(1))
    for name, y in zip(model.output_names, out[:len(model.output_names)]):
        if y.dim() < 2 or y.shape[1] != frames // max(s.subsampling, 1):
            return (f"its output {name!r} {tuple(y.shape)} has no time axis 1 of frames / subsampling "
                    f"({frames} / {s.subsampling}): a call could not return just the steps it completed")
    return None


class AudioInput(StreamingModule):
    """PCM chunks ``[B, S]`` -> the wrapped model's outputs; the frontend runs inside the graph.

    ``model``: a features-in StreamingModule whose ``streaming.frontend`` is a FrontendConfig dict.
    The spectrum and mel energies are computed in float64 (see :mod:`stateport.nn.frontend`; every
    runtime that holds the graph here has float64 MatMul: ONNX Runtime, ONNX Runtime Web and Node,
    OpenVINO), which also keeps quantizers away from them (they rewrite float32 MatMuls only).
    """

    input_name = "audio"
    time_axis = 1

    def __init__(self, model: StreamingModule):
        super().__init__()
        why = audio_input_problem(model)
        if why:
            raise UnsupportedError(f"cannot put the frontend of {type(model).__name__} inside the graph: {why}")
        inner = model.streaming
        config = FrontendConfig.from_dict(inner.frontend)
        self.model = model.eval()
        self.frontend = TorchFrontend(config, dft="matmul", compute_dtype=torch.float64)
        self.output_names = tuple(model.output_names)
        self.architecture = getattr(model, "architecture", type(model).__name__)
        self.input_dim = 1  # unused: the input is [B, S] (see input_specs)

        hop = config.frame_shift_samples
        self.window_samples = config.frame_length_samples
        self.hop_samples = hop
        self.frame_multiple = max(int(inner.frame_multiple), 1)
        smallest = max(self.frame_multiple, int(inner.min_frames))
        self.smallest_frames = smallest + (-smallest) % self.frame_multiple  # the shortest chunk the model takes
        self.min_frames = int(inner.min_frames)
        self.pending_frames = self.smallest_frames - 1  # frames that can wait for the next call
        self.inner_subsampling = max(int(inner.subsampling), 1)
        self.num_features = config.num_features
        self.vocabulary = list(inner.vocabulary)

        # The card: the input's time axis counts samples (one "frame" is one sample), so the nominal
        # chunk, the multiple and the subsampling are in samples; the frontend says it is in the graph.
        s = self.streaming
        s.sample_rate_hz = config.sample_rate_hz
        s.frame_hop_samples = 1
        s.frames_per_step = int(inner.frames_per_step) * hop
        s.frame_multiple = s.min_frames = 1
        s.lookahead_frames = 0
        s.subsampling = self.inner_subsampling * hop
        s.frontend = {**config.to_dict(), FRONTEND_IN_GRAPH: True}
        s.output_kind, s.output_port = inner.output_kind, inner.output_port
        s.vocabulary, s.blank_id = list(inner.vocabulary), inner.blank_id
        # Latency as the features-in model has it: a chunk of frames_per_step frames needs its
        # last frame's whole window (the card's own formula would count the window with a 1-sample hop).
        s.algorithmic_latency_ms = round(1000.0 * (int(inner.frames_per_step) * hop + max(
            self.window_samples - hop, 0)) / config.sample_rate_hz, 3)

    # -- ports ----------------------------------------------------------------------------
    def input_specs(self) -> list[InputSpec]:
        rate = self.frontend.config.sample_rate_hz
        return [InputSpec(self.input_name, (BATCH_DIM, SAMPLE_DIM), time_axis=1,
                          description=f"mono PCM samples, float32 in [-1, 1] at {rate} Hz; any number >= 1 per call")]

    def frontend_state_decls(self) -> list[StateDecl]:
        """The states the in-graph frontend carries between calls (before the model's own)."""
        window, hop = self.window_samples, self.hop_samples
        decls = [
            StateDecl(AUDIO_IN_SAMPLES_STATE, (BATCH_DIM, window - 1), init=0.0, reset_on_end_of_speech=False,
                      description=f"the last {window - 1} samples (right-aligned): the next {window}-sample frame "
                                  "starts among them"),
            StateDecl(AUDIO_IN_SAMPLE_COUNT_STATE, (BATCH_DIM, 1), init=0, reset_on_end_of_speech=False,
                      dtype=torch.int64, batch_uniform=True,
                      description=f"samples received since the next frame's start (0..{window - 1}; the frame "
                                  f"needs {window}, frames start every {hop}); all streams of a batch in phase"),
        ]
        if self.pending_frames:
            decls += [
                StateDecl(AUDIO_IN_FRAMES_STATE, (BATCH_DIM, self.pending_frames, self.num_features), init=0.0,
                          reset_on_end_of_speech=False,
                          description=f"feature frames computed but not yet stepped (right-aligned; the model "
                                      f"steps {self.frame_multiple}-frame multiples of at least {self.min_frames})"),
                StateDecl(AUDIO_IN_FRAME_COUNT_STATE, (BATCH_DIM, 1), init=0, reset_on_end_of_speech=False,
                          dtype=torch.int64, batch_uniform=True,
                          description=f"how many of frontend_frames are real (0..{self.pending_frames})"),
            ]
        return decls

    def state_decls(self) -> list[StateDecl]:
        return self.frontend_state_decls() + list(self.model.state_decls())

    def output_steps(self, num_samples: int) -> int:
        """Output steps one call of ``num_samples`` samples yields from a fresh state (the first frame needs a
        whole window, and frames wait for a whole model step)."""
        return self._runnable(self.frontend.config.num_frames(num_samples)) // self.inner_subsampling

    def _runnable(self, frames: int) -> int:
        """The longest chunk the model takes out of ``frames`` waiting frames (0: none)."""
        run = frames - frames % self.frame_multiple
        return run if run >= self.min_frames else 0

    # -- the graph ------------------------------------------------------------------------
    def step(self, audio, *state):
        """``audio [B, S]``, state -> ``(*outputs, *new_state)``; outputs hold the steps this call completed."""
        n_frontend = len(self.frontend_state_decls())
        samples, sample_count = state[0], state[1]
        inner_state = state[n_frontend:]
        window, hop = self.window_samples, self.hop_samples
        batch = audio.shape[0]

        # Framing. The buffer is right-aligned, so the new buffer is always the last L - 1 samples.
        seq32 = torch.cat([samples, audio], dim=1)  # [B, L - 1 + S]
        seq = seq32.to(torch.float64)  # the frontend is one float64 island (see TorchFrontend)
        have = sample_count[0, 0] + (seq.shape[1] - (window - 1))  # samples since the next frame's start
        # Frames now complete: floor((have - L) / hop) + 1, written so the division never sees a
        # negative number (ONNX integer Div truncates toward zero).
        num_frames = torch.clamp_min(have - window + hop, 0) // hop
        first = (window - 1) - sample_count[0, 0]  # where the next frame starts in seq
        index = (first + torch.arange(num_frames) * hop)[:, None] + torch.arange(window)[None, :]
        scaled = (seq * self.frontend.config.input_scale).to(torch.float32).to(torch.float64)  # as knf scales it
        feats = self.frontend.features_of_frames(scaled[:, index])  # [B, f, F] float32
        new_samples = seq32[:, seq32.shape[1] - (window - 1):]
        new_sample_count = (have - num_frames * hop).reshape(1, 1).expand(batch, 1)

        # The model steps the longest run it takes; the rest waits in frontend_frames.
        if self.pending_frames:
            frames, frame_count = state[2], state[3]
            queue = torch.cat([frames, feats], dim=1)  # [B, P + f, F]
            waiting = frame_count[0, 0]
            available = waiting + num_frames
        else:
            queue, waiting, available = feats, torch.zeros_like(num_frames), num_frames
        run = available - available % self.frame_multiple
        run = run * (run >= self.min_frames).to(run.dtype)
        ran = run > 0
        # Nothing to run: step a dummy chunk (zero frames appended below) and discard its result.
        length = torch.where(ran, run, torch.full_like(run, self.smallest_frames))
        start = queue.shape[1] - available  # the first waiting frame
        padded = F.pad(queue, (0, 0, 0, self.smallest_frames))
        x = padded.index_select(1, start + torch.arange(length))
        out = self.model.step(x, *inner_state)
        n_out = len(self.output_names)
        kept = []
        for y in out[:n_out]:
            keep = y.shape[1] * ran.to(torch.int64)
            kept.append(y.index_select(1, torch.arange(keep)))
        new_inner = [_choose(ran, new, old) for new, old in zip(out[n_out:], inner_state)]

        new_frontend = [new_samples, new_sample_count]
        if self.pending_frames:
            new_frontend += [queue[:, queue.shape[1] - self.pending_frames:],
                             (available - run).reshape(1, 1).expand(batch, 1)]
        return (*kept, *new_frontend, *new_inner)

    # -- the offline reference ------------------------------------------------------------
    def forward(self, audio: torch.Tensor):
        """Whole signals ``[B, N]`` -> outputs: Kaldi's features, then the model's ``forward``.

        The features-in pipeline a client runs without this module, over the frames that make
        whole model steps (the rest would wait for more audio), with the features computed as
        kaldi-native-fbank computes them but with an exact FFT
        (:func:`~stateport.nn.frontend.kaldi_reference_features`): knf's own FFT is only
        float32-accurate, and a sensitive model turns that into logit differences around the
        proof's bound (:meth:`forward_runtime_frontend` measures it). Not differentiable (numpy).
        """
        return self._forward_with(audio, kaldi_reference_features)

    def forward_runtime_frontend(self, audio: torch.Tensor):
        """As :meth:`forward`, with kaldi-native-fbank's own features (the runtime frontend's)."""
        return self._forward_with(audio, compute_features)

    def _forward_with(self, audio: torch.Tensor, features):
        config = self.frontend.config
        rows = [features(np.ascontiguousarray(row, dtype=np.float32), config)
                for row in audio.detach().cpu().numpy()]
        feats = torch.from_numpy(np.stack(rows)) if rows else torch.zeros(0, 0, self.num_features)
        run = self._runnable(feats.shape[1])
        if run:
            out = self.model(feats[:, :run])
            return tuple(out) if isinstance(out, (tuple, list)) else (out,)
        # No whole step: empty outputs of the model's layout (from a dummy chunk).
        dummy = torch.zeros(audio.shape[0], self.smallest_frames, self.num_features)
        out = self.model.step(dummy, *self.model.init_state(audio.shape[0]))
        return tuple(y[:, :0] for y in out[:len(self.output_names)])


def _choose(condition: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``where(condition, new, old)``; for bool states in logical ops, since ONNX Runtime's CPU ``Where``
    has no bool kernel (measured: the session refuses to load)."""
    if new.dtype == torch.bool:
        return (condition & new) | (~condition & old)
    return torch.where(condition, new, old)
