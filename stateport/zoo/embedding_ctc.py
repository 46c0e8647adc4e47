"""``embedding-ctc``: Google's pretrained speech embedding (frozen) + LSTM + CTC head.

    features [B, T, 32] (natural-log Slaney log-mel, :func:`speech_embedding.frontend_config`)
      -> every 8 frames, the last 76 frames (760 ms) -> SpeechEmbedding -> [B, T / 8, 96]
      -> fixed normalisation -> LSTM -> linear -> logits [B, T / 8, V] (CTC, blank 0)

Why: our digit recogniser learns from four real speakers and many synthetic voices, and an
LSTM over log-mel learnt those speakers rather than speech (the README's held-out-speaker
figures). The embedding was trained by Google on a very large corpus of real speech; with
it frozen, only the small head is trained, on top of features that already abstract over
speakers and channels. Measured before building this (FSDD, pooled embeddings + logistic
regression on four speakers' isolated digits): 94 % on george, 97 % on jackson, 100 % on
lucas, where the log-mel LSTM has 86 %, 73 % and 79 %.

Streaming: a chunk of ``8 k`` frames yields ``k`` embeddings, each of the 76 frames ending at
one of its 8-frame groups, computed incrementally: the state ``windows_conv<i>`` /
``windows_last`` holds each time-reaching conv's last input frames, ``windows_started`` whether
they are the stream's yet (:class:`EmbeddingWindows`).
Frames are floored first (``LOG_MEL_FLOOR``; why: see there), and a stream starts as if after
a window of frames at that floor, offline and streamed alike. The offline forward is the step
from that state, so streaming equals offline up to float rounding.
Cost per 80 ms: the new frames of one embedding window (about 0.25 ms on one x86 core) and the LSTM.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import InvalidInputError
from ..nn import StateDecl, StreamingLayer, StreamingLSTM, StreamingModule
from ..spec import BATCH_DIM
from .common import BLANK_ID, DIGIT_VOCABULARY, FeatureNorm, InputNoise
from .registry import register
# HOP_FRAMES: one embedding per 80 ms, as the model was trained (the network's time stride)
from .speech_embedding import (EMBEDDING_DIM, HOP_FRAMES, MEL_BINS, WINDOW_FRAMES, SpeechEmbedding,
                               frontend_config, google_log_mel)

BUFFER_FRAMES = WINDOW_FRAMES - HOP_FRAMES
# The lowest log-mel value the embedding is shown: natural-log mel power 10 (int16-scaled
# samples), 3 on Google's scale. Why: Google's frontend floors each input 80 dB below its
# loudest frame, so the embedding never saw the float-epsilon floor (-4.9 on its scale) that
# digital silence gives; a clip that starts without a lead-in then jumps 12 units in one
# frame. That floor needs the whole input, so a stream uses a fixed one: 103 dB below a
# full-scale 1 kHz tone (13.3), 15 dB above 16-bit quantisation noise (1.5), just below where Google's
# rule puts it for FSDD speech (loudest frames 12: floor 4). Measured with the model trained
# without a floor, on george (offline decode, its features clamped): single digits 6.8 -> 5.4 %,
# strings 6.0 -> 5.3 %; trained with it (and a regularised head), 4.6 and 4.7 % (README).
LOG_MEL_FLOOR = math.log(10.0)
QUIET_FRAME = LOG_MEL_FLOOR  # the state's start: silence, at the floor
# QUIET_FRAME on Google's scale, as the graph computes it (3.0 up to float32 rounding): where the
# embedding's input context starts.
QUIET_INPUT = float(google_log_mel(torch.tensor(QUIET_FRAME, dtype=torch.float32)))


class EmbeddingWindows(StreamingLayer):
    """Log-mel frames ``[B, 8 k, 32]`` -> speech embeddings ``[B, k, 96]`` (frozen, pretrained).

    Each embedding is that of the 76 frames (760 ms) ending at one of the chunk's 8-frame groups,
    computed incrementally (:meth:`SpeechEmbedding.stream`): the state is each time-reaching
    conv's context (its last input frames), not the frames themselves, so a hop computes the new
    frames only. Measured with ONNX Runtime, one thread, 16-frame steps, the whole model: 0.49 ms per
    step against 2.5 ms for two whole windows (the previous state: the last 68 frames); the same numbers
    up to float rounding (tests/zoo/test_embedding_ctc.py).

    A stream starts as if after a window of quiet frames (``QUIET_FRAME``). The first context
    holds input frames, so it starts at that value (one number, the card's init). The deeper
    contexts after quiet frames vary over channels and frequencies, which a card's init cannot
    say, so they start from ``quiet_contexts`` (from the frozen weights, in the graph) until the
    stream has stepped once: the state ``started`` (bool, False at the start and after a reset)
    chooses. Why not carry them as offsets from the quiet ones: a reduced-precision graph would
    then round each context at every step boundary, which offline never does (the fp16 and int8
    streams differed from their offline runs, measured).
    """

    def __init__(self, *, pretrained: bool = True):
        super().__init__()
        self.embedding = SpeechEmbedding()
        if pretrained:
            self.embedding.load_pretrained()
        self.embedding.requires_grad_(False)
        self.refresh()
        # The quiet contexts follow the weights (not saved: a function of them).
        self.register_load_state_dict_post_hook(lambda module, _keys: module.refresh())

    def refresh(self) -> None:
        """Compute the quiet contexts with the embedding as it is now (loaded weights, frozen quantizers)."""
        quiet = self.embedding.steady_contexts(QUIET_INPUT)
        for k, context in enumerate(quiet[1:]):
            self.register_buffer(f"quiet_context{k}", context, persistent=False)

    def quiet_contexts(self) -> list[torch.Tensor]:
        """The deeper contexts (all but the first) after quiet frames ``[1, channels, frames, freq]``."""
        return [getattr(self, f"quiet_context{k}") for k in range(len(self.embedding.context_shapes()) - 1)]

    def state_decls(self):
        (first, first_shape), *deeper = self.embedding.context_shapes()
        return [StateDecl(first, (BATCH_DIM, *first_shape), init=QUIET_INPUT,
                          description=f"the last {first_shape[1]} input frames of the embedding (floored log-mel on "
                                      f"Google's scale), starting quiet"),
                *(StateDecl(name, (BATCH_DIM, *shape),
                            description=f"the last {shape[1]} input frames of the embedding's {name} "
                                        f"({shape[0]} channels x {shape[2]} bins); unused until 'started'")
                  for name, shape in deeper),
                StateDecl("started", (BATCH_DIM, 1), dtype=torch.bool,
                          description="whether the deeper contexts hold this stream's frames (else: the quiet "
                                      "ones in the graph)")]

    def train(self, mode: bool = True):
        super().train(mode)
        self.embedding.eval()  # frozen: never in training mode
        return self

    def step(self, x, *state):
        first, *deeper, started = state
        chosen = started.reshape(-1, 1, 1, 1)
        deeper = [torch.where(chosen, c, q) for c, q in zip(deeper, self.quiet_contexts())]
        emb, new = self.embedding.stream(google_log_mel(x.clamp_min(LOG_MEL_FLOOR)), [first, *deeper])
        return (emb, *new, torch.ones_like(started))

    def step_windows(self, x):
        """The same embeddings computed window by window from a fresh state (the definition the
        incremental :meth:`step` is tested against): every 8 frames, the whole last 76 frames,
        the first windows reaching back into quiet frames."""
        quiet = torch.full((x.shape[0], BUFFER_FRAMES, MEL_BINS), QUIET_FRAME, dtype=x.dtype, device=x.device)
        seq = torch.cat([quiet, x.clamp_min(LOG_MEL_FLOOR)], dim=1)
        count = x.shape[1] // HOP_FRAMES
        index = (torch.arange(count, device=x.device)[:, None] * HOP_FRAMES
                 + torch.arange(WINDOW_FRAMES, device=x.device)[None, :])
        windows = seq[:, index]  # [B, k, 76, F]
        emb = self.embedding(google_log_mel(windows.reshape(-1, WINDOW_FRAMES, MEL_BINS)))
        return emb.reshape(x.shape[0], count, EMBEDDING_DIM)


@register("embedding-ctc", description="Google's pretrained speech embedding (frozen) + LSTM + CTC head "
                                       "over 32-bin log-mel",
          sizes={"tiny": {"hidden_size": 32, "num_layers": 1},
                 "default": {"hidden_size": 128, "num_layers": 2}})
class EmbeddingCtc(StreamingModule):
    """x [B, T, 32] log-mel -> logits [B, T / 8, V]. State: ``windows_*`` (the embedding's contexts),
    ``encoder_h``/``encoder_c``.

    Only the head trains (``frozen_prefix`` lets a trainer compute the embeddings once).
    """

    input_name = "features"
    output_names = ("logits",)

    def __init__(self, *, hidden_size: int, num_layers: int, vocabulary: list | None = None,
                 frames_per_step: int = 16, dropout: float = 0.0, input_dropout: float = 0.0,
                 input_noise: float = 0.0, pretrained: bool = True, blank_bias: float = 0.0,
                 warm_start: bool = False):
        super().__init__()
        if frames_per_step < HOP_FRAMES or frames_per_step % HOP_FRAMES:
            raise InvalidInputError(f"frames_per_step must be a multiple of {HOP_FRAMES}; got {frames_per_step}")
        self.vocabulary = list(vocabulary or DIGIT_VOCABULARY)
        self.input_dim = MEL_BINS
        self.windows = EmbeddingWindows(pretrained=pretrained)
        self.norm = FeatureNorm(EMBEDDING_DIM)  # of the embeddings, set from training data
        self.regularise = InputNoise(input_noise, input_dropout)  # training only
        self.encoder = StreamingLSTM(EMBEDDING_DIM, hidden_size, num_layers, dropout=dropout)
        self.head = nn.Linear(hidden_size, len(self.vocabulary))
        # Added to the blank's logit, in the graph: greedy decoding then emits a digit only where
        # its logit beats blank's by this much, i.e. a posterior threshold that rejects weak
        # digits (other speech heard as digits). Not trained: chosen on the dev voices after
        # training (stateport.train.finish). Not a weight (kept out of the state dict).
        self.blank_bias = float(blank_bias)
        offset = torch.zeros(len(self.vocabulary))
        offset[BLANK_ID] = self.blank_bias
        self.register_buffer("blank_offset", offset, persistent=False)
        # warm_start: the LSTM starts from the state it settles in after silence, not from zeros.
        # Why: measured on the held-out speaker, a model trained on connected speech missed
        # twice as many digits of recordings that start on their word (12.4 %) as of the same
        # recordings after 300 ms of silence (6.6 %): from zeros, the first words meet a state
        # the LSTM otherwise only has at the very start of its training utterances. A card's
        # initial state is one number per port, so the ports carry the state *minus* that
        # silence state (``start_h``/``start_c``, set by :meth:`settle_start_state` after
        # training): a fresh stream of zeros is then the settled state; same computation.
        self.warm_start = bool(warm_start)
        if self.warm_start:
            shape = (num_layers, 1, hidden_size)
            self.register_buffer("start_h", torch.zeros(shape))
            self.register_buffer("start_c", torch.zeros(shape))
        s = self.streaming
        s.subsampling = s.frame_multiple = s.min_frames = HOP_FRAMES
        s.frames_per_step = frames_per_step
        s.frontend = frontend_config().to_dict()
        s.output_kind, s.output_port = "ctc", "logits"
        s.vocabulary, s.blank_id = self.vocabulary, BLANK_ID

    def frozen_prefix(self, x):
        """Offline embeddings ``[B, T / 8, 96]`` of features from a fresh state (no trainable weights)."""
        with torch.no_grad():
            emb, *_ = self.windows.step(x, *self.windows.init_state(x.shape[0]))
        return emb

    def head_forward(self, emb):
        """Logits from :meth:`frozen_prefix`'s embeddings, from a fresh state (what training fits)."""
        h, c = self.encoder.init_state(emb.shape[0])
        y, _, _ = self._encode(emb, h.to(emb.device), c.to(emb.device))
        return (self._logits(y),)

    def _logits(self, y):
        return self.head(y) + self.blank_offset if self.blank_bias else self.head(y)

    def _encode(self, emb, h, c):
        if not self.warm_start:
            return self.encoder.step(self.regularise(self.norm(emb)), h, c)
        y, h, c = self.encoder.step(self.regularise(self.norm(emb)), h + self.start_h, c + self.start_c)
        return y, h - self.start_h, c - self.start_c

    @torch.no_grad()
    def settle_start_state(self, seconds: float) -> None:
        """Set the warm start (``warm_start``) to the LSTM's state after ``seconds`` of digital silence
        from zeros (whole 80 ms hops). The cell state does not converge over silence (some cells
        integrate), so the duration is a choice: :mod:`stateport.train.finish` makes it on dev voices."""
        if not self.warm_start:
            raise InvalidInputError("settle_start_state needs a model built with warm_start=True")
        self.start_h.zero_()
        self.start_c.zero_()
        frames = int(round(seconds * 100 / HOP_FRAMES)) * HOP_FRAMES
        if frames:
            *_, h, c = self.step(torch.full((1, frames, MEL_BINS), QUIET_FRAME), *self.init_state(1))
            self.start_h.copy_(h)
            self.start_c.copy_(c)

    def step(self, x, *state):
        *contexts, h, c = state
        emb, *contexts = self.windows.step(x, *contexts)
        y, h, c = self._encode(emb, h, c)
        return (self._logits(y), *contexts, h, c)
