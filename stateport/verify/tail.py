"""The end-of-input contract, measured: how much trailing silence a model needs to say all it heard.

A causal streaming model emits a word some time after the word ends: CTC's emission delay
(the built-in model was trained to emit up to 0.3 s after a word), the frontend window, the
subsampling and the look-ahead. A recording that ends on its last word (a trimmed file,
push-to-talk) therefore loses that word unless the client keeps feeding audio. The card
carries the amount (``streaming.tail_padding_ms``), and ``input_finished()`` feeds that much
silence through the frontend.

:func:`measure_tail_padding` measures it: for a trained model, on trimmed held-out recordings
(each ends at the last sample of its last word), the longest delay between the end of the
recording and the end of the audio the model had heard when it emitted its last token, plus a
margin; for an untrained export (no recordings), the receptive field the card implies.
:func:`write_tail_padding` stores the result in the card without touching the graph.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InvalidInputError
from ..runtime.features import frontend_hop_samples, receptive_field_tail_ms
from ..runtime.model_file import read_card, replace_card
from ..runtime.recognizer import Recognizer

__all__ = ["TailMeasurement", "measure_tail_padding", "write_tail_padding", "SILENCE_AFTER_S"]

# Silence appended while measuring: far beyond any emission delay seen (the built-in model's
# longest was 0.32 s), so that a token that comes at all comes within it.
SILENCE_AFTER_S = 2.0


@dataclass(frozen=True)
class TailMeasurement:
    """What :func:`measure_tail_padding` found. Delays in ms after the last sample of a recording.

    ``tail_padding_ms``: the value for the card (a multiple of the frame hop, at least the
    receptive field); ``basis``: one line saying how, for the card's ``tail_padding_basis``.
    """

    tail_padding_ms: float
    basis: str
    method: str                     # "emission-delay" or "receptive-field"
    receptive_field_ms: float
    recordings: int = 0
    emitted: int = 0                # recordings on which the model emitted at least one token
    max_delay_ms: float | None = None
    p50_delay_ms: float | None = None
    p99_delay_ms: float | None = None
    margin_ms: float = 0.0
    delays_ms: tuple = ()

    def to_dict(self) -> dict:
        d = asdict(self)
        d["delays_ms"] = list(self.delays_ms)
        return d


def _delays_ms(rec: Recognizer, recordings, silence_s: float) -> list:
    """Per recording: ms of audio past its last sample that the model had heard when it emitted its last
    token (None: no token at all)."""
    st = rec.card.streaming
    stage, hop, sub = rec._stage, st.frame_hop_samples, st.subsampling
    rate = st.sample_rate_hz
    out = []
    for samples, sample_rate in recordings:
        samples = np.asarray(samples, dtype=np.float32)
        padded = np.concatenate([samples, np.zeros((int(silence_s * sample_rate),) + samples.shape[1:], np.float32)])
        result = rec.transcribe(padded, sample_rate)
        if not result.timestamps:
            out.append(None)
            continue
        # The last token's output frame covers input rows [k, k + sub); the model had heard up to the
        # end of the last one's window (plus its look-ahead frames) when it emitted the token. (An
        # audio-in card's rows are samples; the window is that of its in-graph frontend.)
        first_input_frame = int(round(result.timestamps[-1] * rate / hop))
        heard = stage.heard_sample(first_input_frame + sub - 1 + st.lookahead_frames)
        end = samples.shape[0] * rate / sample_rate
        out.append(1000.0 * (heard - end) / rate)
    return out


def measure_tail_padding(model, recordings=None, *, margin_ms: float | None = None, source: str = "",
                         allow_uncertified: bool = False, silence_s: float = SILENCE_AFTER_S) -> TailMeasurement:
    """Measure the trailing silence ``model`` needs at the end of input.

    Args:
        model: a stateport ``.onnx`` path (or transducer directory) or a :class:`Recognizer`.
        recordings: ``(samples, sample_rate_hz)`` of trimmed held-out speech, each ending at the
            last sample of its last word; None for an untrained export (the receptive field).
        margin_ms: added to the longest delay; default one output frame (a recording not seen
            here may emit one output frame later).
        source: what the recordings are, for the basis line (e.g. "FSDD george 25-49").
        silence_s: silence appended while measuring (must exceed any delay).
    """
    rec = model if isinstance(model, Recognizer) else Recognizer.from_file(model, allow_uncertified=allow_uncertified)
    card = rec.card
    st = card.streaming
    field_ms = receptive_field_tail_ms(card)
    hop_ms = 1000.0 * frontend_hop_samples(card) / st.sample_rate_hz  # the tail is a whole number of frame hops
    if recordings is None:
        return TailMeasurement(field_ms, f"receptive field (frontend window, subsampling {st.subsampling}, "
                                         f"look-ahead {st.lookahead_frames} frames): no emission delay measured",
                               "receptive-field", field_ms)
    recordings = list(recordings)
    if not recordings:
        raise InvalidInputError("measure_tail_padding: recordings is empty; pass None for an untrained export")
    # Measure with no flush of the recognizer's own: only the appended silence counts.
    probe = Recognizer(rec.graphs if rec.graphs is not None else rec.session, options=rec.options, tail_padding_ms=0)
    delays = _delays_ms(probe, recordings, silence_s)
    seen = np.array([d for d in delays if d is not None], dtype=np.float64)
    if margin_ms is None:
        margin_ms = 1000.0 * st.subsampling * st.frame_hop_samples / st.sample_rate_hz  # one output step
    if not seen.size:
        raise InvalidInputError(f"the model emitted no token on any of the {len(recordings)} recordings: "
                                "nothing to measure (an untrained model? pass recordings=None)")
    longest = float(seen.max())
    tail = max(math.ceil((max(longest, 0.0) + margin_ms) / hop_ms - 1e-9) * hop_ms, field_ms)
    p50, p99 = (float(v) for v in np.percentile(seen, [50, 99]))
    basis = (f"emission delay on {len(recordings)} trimmed held-out recordings{' (' + source + ')' if source else ''}: "
             f"longest {longest:.0f} ms after the last sample (p99 {p99:.0f} ms, p50 {p50:.0f} ms, "
             f"{seen.size} emitted), + {margin_ms:g} ms margin")
    return TailMeasurement(round(tail, 3), basis, "emission-delay", field_ms, len(recordings), int(seen.size),
                           round(longest, 3), round(p50, 3), round(p99, 3), float(margin_ms),
                           tuple(round(float(d), 3) if d is not None else None for d in delays))


def write_tail_padding(path: str | os.PathLike, measurement: TailMeasurement) -> None:
    """Store a measurement in the card of the ONNX file at ``path``; the graph (and its certificate) untouched."""
    card = read_card(path)
    card.streaming.tail_padding_ms = float(measurement.tail_padding_ms)
    card.streaming.tail_padding_basis = measurement.basis
    replace_card(path, card)
