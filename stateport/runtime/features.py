"""The feature stage of a stream: what turns model-rate audio into the rows the model's input takes.

One stage kind is chosen once per model from its card (:func:`feature_stage_for`), so the step
loop never asks which kind it has:

- :class:`KaldiFeatures`: the card declares a frontend (``card.frontend``): Kaldi fbank / MFCC
  frames computed by kaldi-native-fbank (:mod:`.frontend`), one row per frame hop.
- :class:`FeaturesIn`: no frontend in the card: the caller hands feature rows in
  (``accept_features``); there is no audio, so no VAD and no automatic end-of-input flush (the
  runtime cannot know what silence looks like in the caller's feature space).

- :class:`AudioSamples`: the graph computes its own features (``card.audio_input``, see
  :mod:`stateport.nn.audio_in`): a row is one sample at the card's rate, silence is zeros, and
  at the end of input the stage says how many more zeros complete the frames the graph holds back.

A stage *spec* (these classes) is shared by every stream of a model; ``open()`` gives the
per-stream part (:class:`KaldiStream`), which holds the library's online extractor.
"""

from __future__ import annotations

import numpy as np

from ..errors import CardError
from ..spec import (AUDIO_IN_FRAME_COUNT_STATE, AUDIO_IN_FRAMES_STATE, AUDIO_IN_SAMPLE_COUNT_STATE, ModelCard,
                    state_port_names)
from .frontend import FrontendConfig, StreamingFrontend, compute_features

__all__ = ["FrameQueue", "KaldiFeatures", "FeaturesIn", "AudioSamples", "feature_stage_for", "frontend_hop_samples",
           "receptive_field_tail_ms"]


class FrameQueue:
    """Rows ``[T, F]`` waiting for the model: appended at the tail, read and consumed at the head.

    One preallocated float32 buffer that grows by doubling and compacts in place, so a step costs
    a slice, not a concatenation of everything queued (which the old loop paid on every pop).
    """

    __slots__ = ("_buf", "_head", "_tail")

    def __init__(self, num_features: int, capacity_rows: int = 64):
        self._buf = np.empty((max(capacity_rows, 1), num_features), np.float32)
        self._head = self._tail = 0

    def __len__(self) -> int:
        return self._tail - self._head

    def clear(self) -> None:
        self._head = self._tail = 0

    def reserve(self, rows: int) -> np.ndarray:
        """A writable view of ``rows`` new rows at the tail (they count as queued)."""
        buf = self._buf
        if self._tail + rows > buf.shape[0]:
            queued = self._tail - self._head
            if queued + rows > buf.shape[0] // 2:
                grown = np.empty((max(2 * buf.shape[0], queued + rows), buf.shape[1]), np.float32)
                grown[:queued] = buf[self._head:self._tail]
                self._buf = buf = grown
            else:
                buf[:queued] = buf[self._head:self._tail]
            self._head, self._tail = 0, queued
        view = buf[self._tail:self._tail + rows]
        self._tail += rows
        return view

    def append(self, rows: np.ndarray) -> None:
        self.reserve(rows.shape[0])[:] = rows

    def head(self, rows: int) -> np.ndarray:
        """The first ``rows`` queued rows (a view: copy it before the queue changes)."""
        return self._buf[self._head:self._head + rows]

    def consume(self, rows: int) -> None:
        self._head += rows
        if self._head == self._tail:
            self._head = self._tail = 0


class KaldiFeatures:
    """Kaldi fbank / MFCC from the card's frontend, shared by every stream of a model.

    ``silence_row``: the frame of digital silence through this frontend (the log floor, not a
    row of zeros, which would be a loud frame to the model) — what pads a last chunk.
    """

    takes_audio = True

    def __init__(self, config: FrontendConfig):
        self.config = config
        self.num_features = config.num_features
        self.hop_samples = config.frame_shift_samples
        self.frame_length_samples = config.frame_length_samples
        # Frame k's window ends at k * hop + _end_offset (snip_edges=False centres frames).
        self._end_offset = config.first_sample_of_frame(0) + config.frame_length_samples
        self.silence_row = compute_features(np.zeros(config.frame_length_samples, np.float32), config)[0]

    def frame_end_sample(self, frame_index: int) -> int:
        """Samples a stream must have fed before frame ``frame_index`` can be computed."""
        return frame_index * self.hop_samples + self._end_offset

    def heard_sample(self, row: int) -> int:
        """Samples the model had heard once input row ``row`` reached it: the end of that frame's window."""
        return self.frame_end_sample(row)

    def completion_samples(self, state: dict) -> int:
        """Zeros to feed after the end-of-input padding: none (the runtime pads the last chunk itself)."""
        return 0

    def open(self) -> "KaldiStream":
        return KaldiStream(self.config)


class KaldiStream:
    """The per-stream part of :class:`KaldiFeatures`: kaldi-native-fbank's online extractor.

    The extractor is created on the first audio, not with the stream: building it computes the
    mel filter bank (measured: 25 us for 32 bins, 120 us for 80), which a stream that never
    receives audio should not pay.
    """

    __slots__ = ("_config", "_frontend")

    def __init__(self, config: FrontendConfig):
        self._config = config
        self._frontend: StreamingFrontend | None = None

    def _live(self) -> StreamingFrontend:
        if self._frontend is None:
            self._frontend = StreamingFrontend(self._config)
        return self._frontend

    @property
    def next_frame_index(self) -> int:
        return 0 if self._frontend is None else self._frontend.next_frame_index

    @property
    def finished(self) -> bool:
        return self._frontend is not None and self._frontend.is_finished

    def accept(self, samples: np.ndarray) -> None:
        """Float32 samples ``[N > 0]``, checked where they entered the stream."""
        self._live().accept_checked(samples)

    def finish(self) -> None:
        self._live().input_finished()

    def pop_into(self, queue: FrameQueue) -> None:
        """Move every ready frame into ``queue``."""
        fe = self._frontend
        if fe is not None and fe.num_frames_ready:
            fe.pop_into(queue.reserve(fe.num_frames_ready))

    def reset(self) -> None:
        self._frontend = None


class FeaturesIn:
    """No frontend in the card: feature rows come from the caller (``accept_features``)."""

    takes_audio = False

    def __init__(self, num_features: int):
        self.num_features = num_features
        self.hop_samples = 0
        self.frame_length_samples = 0
        # Without a frontend the runtime cannot know what silence looks like: zeros pad a last chunk.
        self.silence_row = np.zeros(num_features, np.float32)

    def open(self):
        return None

    def completion_samples(self, state: dict) -> int:
        return 0


class AudioSamples:
    """The graph computes its own features (an audio-in card): rows are samples ``[T, 1]`` at the card's rate.

    ``config``: the frontend inside the graph (``card.feature_frontend``). What it holds back
    between calls is in the model's state: ``frontend_sample_count`` (samples since the next
    frame's start) and ``frontend_frame_count`` (frames computed but waiting for a whole model
    step of ``step_frames``; absent when any frame count is a step).
    """

    takes_audio = True
    num_features = 1
    hop_samples = 1
    frame_length_samples = 1
    silence_row = np.zeros(1, np.float32)
    SAMPLE_COUNT = state_port_names(AUDIO_IN_SAMPLE_COUNT_STATE)[0]
    FRAMES = state_port_names(AUDIO_IN_FRAMES_STATE)[0]
    FRAME_COUNT = state_port_names(AUDIO_IN_FRAME_COUNT_STATE)[0]

    def __init__(self, config: FrontendConfig, step_frames: int):
        self.config = config
        self.step_frames = step_frames
        self._window = config.frame_length_samples
        self._hop = config.frame_shift_samples

    def frame_end_sample(self, row: int) -> int:
        """Samples a stream must have fed before row (sample) ``row`` exists."""
        return row + 1

    def heard_sample(self, row: int) -> int:
        """Samples the model had heard once sample ``row`` reached its layers: the end of the window of
        the last in-graph frame that holds it (the frontend's own delay)."""
        return (row // self._hop) * self._hop + self._window

    def completion_samples(self, state: dict) -> int:
        """Zeros that make the graph step the frames it still holds back (0 when it holds none).

        The in-graph twin of the features-in runtime padding its last chunk with frames of
        silence: the waiting frames plus new ones up to a whole model step. ``state``: the
        stream's state inputs after its last call.
        """
        waiting = int(state[self.FRAME_COUNT].reshape(-1)[0]) if self.FRAME_COUNT in state else 0
        if not waiting:
            return 0
        have = int(state[self.SAMPLE_COUNT].reshape(-1)[0])
        return self._window - have + (self.step_frames - waiting - 1) * self._hop

    def open(self) -> "SampleStream":
        return SampleStream()


class SampleStream:
    """The per-stream part of :class:`AudioSamples`: the samples accepted since the last pop."""

    __slots__ = ("_pieces", "_count", "finished")

    def __init__(self):
        self.reset()

    @property
    def next_frame_index(self) -> int:
        return self._count

    def accept(self, samples: np.ndarray) -> None:
        """Float32 samples ``[N > 0]``, checked where they entered the stream."""
        self._pieces.append(samples)

    def finish(self) -> None:
        self.finished = True

    def pop_into(self, queue: FrameQueue) -> None:
        for piece in self._pieces:
            queue.reserve(piece.shape[0])[:, 0] = piece
            self._count += piece.shape[0]
        self._pieces = []

    def reset(self) -> None:
        self._pieces: list = []
        self._count = 0
        self.finished = False


def feature_stage_for(card: ModelCard, num_features: int):
    """The feature stage the card declares, checked against the input port's feature size."""
    if card.audio_input:
        config = FrontendConfig.from_dict(card.feature_frontend)
        waiting = next((s for s in card.states if s.name == AudioSamples.FRAMES), None)
        return AudioSamples(config, 1 + (waiting.shape[1] if waiting is not None else 0))
    if not card.frontend:
        return FeaturesIn(num_features)
    config = FrontendConfig.from_dict(card.frontend)
    st = card.streaming
    if config.sample_rate_hz != st.sample_rate_hz or config.frame_shift_samples != st.frame_hop_samples:
        raise CardError(f"card frontend ({config.sample_rate_hz} Hz, hop {config.frame_shift_samples}) contradicts "
                        f"streaming ({st.sample_rate_hz} Hz, hop {st.frame_hop_samples})")
    if config.num_features != num_features:
        raise CardError(f"card frontend gives {config.num_features} features per frame; the input "
                        f"{card.inputs[0].name} takes {num_features}")
    return KaldiFeatures(config)


def frontend_hop_samples(card: ModelCard) -> int:
    """The hop of the feature frames the model's layers see: the card's, or (audio-in) its in-graph frontend's."""
    if card.audio_input:
        return FrontendConfig.from_dict(card.feature_frontend).frame_shift_samples
    return card.streaming.frame_hop_samples


def receptive_field_tail_ms(card: ModelCard) -> float:
    """Trailing audio a model with no emission delay needs to have heard the last sample: the
    frontend window past the last hop, the rest of the last subsampled output frame, and the
    look-ahead frames. The end-of-input flush of a card without ``tail_padding_ms``, and what
    :func:`stateport.verify.tail.measure_tail_padding` certifies for an untrained export.
    An audio-in card gives what its features-in model's gives (its frames are the same)."""
    st = card.streaming
    hop = frontend_hop_samples(card)
    window = FrontendConfig.from_dict(card.feature_frontend).frame_length_samples if card.frontend else hop
    # st.subsampling counts the card's rows (frames, or samples for an audio-in card).
    samples = max(window - hop, 0) + (st.subsampling + st.lookahead_frames) * st.frame_hop_samples - hop
    return round(1000.0 * samples / st.sample_rate_hz, 3)
