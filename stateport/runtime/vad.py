"""Silero VAD driven through our own session machinery, without torch.

The model file ships in the ``silero-vad`` PyPI package (``silero_vad/data/silero_vad.onnx``).
Importing that package imports torch (its ``__init__`` loads ``silero_vad.model``, which
imports torch and sets its thread count), and so does ``importlib.resources.files``, which
imports the package to find it. We find the file through the package's *distribution
metadata* instead, which reads the installed file list and imports nothing.

The graph is third-party, so it has no card: :func:`silero_card` writes one in code and
:data:`SILERO_PORTS` maps our port names to Silero's (``audio`` -> ``input``, ``state_in`` /
``state_out`` -> ``state`` / ``stateN``, ``speech_probability`` -> ``output``; ``sr`` is a
constant). Silero also carries 64 samples of context (32 at 8 kHz): each call sees the last
samples of the previous window prepended. That is state too; :class:`SileroVad` carries it.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import InvalidInputError, MissingDependencyError, ModelFileError, NonFiniteInputError
from ..spec import ModelCard, OutputSpec, Provenance, StatePort, StreamingSpec, TensorPort
from .endpoint import EndpointConfig, EndpointDetector
from .port_mapping import PortMapping, open_mapped_session

__all__ = ["SileroVad", "silero_model_path", "silero_card", "silero_port_mapping", "EndpointConfig",
           "EndpointDetector", "SILERO_WINDOW_SAMPLES", "SILERO_CONTEXT_SAMPLES"]

SILERO_DISTRIBUTION = "silero-vad"
SILERO_MODEL_FILE = "silero_vad/data/silero_vad.onnx"
# Per sample rate: new samples per call and context samples carried from the previous call.
SILERO_WINDOW_SAMPLES = {16000: 512, 8000: 256}
SILERO_CONTEXT_SAMPLES = {16000: 64, 8000: 32}
SILERO_STATE_SIZE = 128


def silero_model_path() -> Path:
    """Path of ``silero_vad.onnx`` inside the installed ``silero-vad`` package (imports nothing)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(SILERO_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        raise MissingDependencyError("the Silero VAD model ships in the 'silero-vad' package: "
                                     "pip install silero-vad (or pass model_path=)") from None
    path = Path(dist.locate_file(SILERO_MODEL_FILE))
    if not path.is_file():
        raise ModelFileError(f"silero-vad {dist.version} is installed but has no {SILERO_MODEL_FILE}")
    return path


def _silero_version() -> str:
    from importlib import metadata

    try:
        return metadata.version(SILERO_DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return ""


def silero_card(sample_rate_hz: int = 16000) -> ModelCard:
    """The card of the Silero VAD graph at ``sample_rate_hz``, in our port names.

    ``audio`` [B, context + window] float32 -> ``speech_probability`` [B, 1]; state
    ``state_in`` [2, B, 128] (batch axis 1). The VAD's own state is never reset at the end
    of speech (Silero's iterator keeps it for the whole stream).
    """
    window, context = SILERO_WINDOW_SAMPLES[sample_rate_hz], SILERO_CONTEXT_SAMPLES[sample_rate_hz]
    return ModelCard(
        name="silero-vad",
        inputs=[TensorPort("audio", "input", ["batch", context + window],
                           description=f"{context} samples of context then {window} new samples, "
                                       f"float in [-1, 1] at {sample_rate_hz} Hz")],
        outputs=[TensorPort("speech_probability", "output", ["batch", 1])],
        states=[StatePort("state_in", "state_out", [2, "batch", SILERO_STATE_SIZE], batch_axis=1,
                          reset_on_end_of_speech=False, description="LSTM state (h, c)")],
        streaming=StreamingSpec(sample_rate_hz=sample_rate_hz, frame_hop_samples=window, frames_per_step=0,
                                frames_advanced_per_step=0),
        output=OutputSpec(kind="vad", port="speech_probability"),
        provenance=Provenance(stateport_version=__version__, architecture="silero-vad",
                              config={"package": SILERO_DISTRIBUTION, "package_version": _silero_version()},
                              exporter="third-party (port mapping)"),
        frontend=None,
    )


def silero_port_mapping(sample_rate_hz: int = 16000) -> PortMapping:
    """Our card names -> Silero's graph names; ``sr`` bound to the sample rate."""
    return PortMapping(
        names={"audio": "input", "state_in": "state", "state_out": "stateN", "speech_probability": "output"},
        constants={"sr": np.array(sample_rate_hz, dtype=np.int64)},
    )


class SileroVad:
    """Streaming Silero VAD for one stream: one probability per window of new samples.

    Args:
        model_path: the ONNX file (default: the one in the installed ``silero-vad`` package).
        sample_rate_hz: 16000 (512-sample windows, 32 ms) or 8000 (256-sample windows).
        threads: ONNX Runtime intra-op threads.

    Usage::

        vad = SileroVad()
        p = vad.probability(window)        # float32 [window_samples] -> speech probability
        probs = vad.probabilities(audio)   # whole signal from a fresh state, last window zero-padded
    """

    def __init__(self, model_path: str | os.PathLike | None = None, *, sample_rate_hz: int = 16000,
                 threads: int = 1):
        if sample_rate_hz not in SILERO_WINDOW_SAMPLES:
            raise InvalidInputError(f"Silero VAD runs at {sorted(SILERO_WINDOW_SAMPLES)} Hz; got {sample_rate_hz!r}")
        self.sample_rate_hz = int(sample_rate_hz)
        self.window_samples = SILERO_WINDOW_SAMPLES[sample_rate_hz]
        self.context_samples = SILERO_CONTEXT_SAMPLES[sample_rate_hz]
        self.model_path = Path(model_path) if model_path is not None else silero_model_path()
        self.session = open_mapped_session(self.model_path, silero_card(sample_rate_hz),
                                           silero_port_mapping(sample_rate_hz), threads=threads)
        self._graph = self.session.session  # the port-mapped ONNX Runtime session
        self._output_names = self.session.card.output_names  # speech_probability, state_out
        # One preallocated input row: [context | window]; the context part is the carried state.
        self._input = np.zeros((1, self.context_samples + self.window_samples), dtype=np.float32)
        self.reset()

    @property
    def card(self) -> ModelCard:
        return self.session.card

    def new_stream(self) -> "SileroVad":
        """A VAD for another stream that shares this one's ONNX session (no model load): own state
        and context, starting fresh."""
        other = copy.copy(self)
        other._input = np.zeros_like(self._input)
        other.reset()
        return other

    def reset(self) -> None:
        """Start a new stream: LSTM state and context back to zeros (as Silero's reset_states)."""
        self._state = self.session.init_state(1)
        self._input[:] = 0.0
        self._checked = False  # the next call goes through OnnxStepSession's card checks

    def probability(self, window: np.ndarray) -> float:
        """Speech probability of the next ``window_samples`` float32 samples (state carried)."""
        window = np.asarray(window)
        if window.shape != (self.window_samples,):
            raise InvalidInputError(f"a VAD window must be float samples [{self.window_samples}] at "
                                    f"{self.sample_rate_hz} Hz; got shape {window.shape}")
        if window.dtype.kind != "f":
            raise InvalidInputError(f"a VAD window must hold float samples in [-1, 1]; got dtype {window.dtype}")
        if not np.isfinite(window).all():
            raise NonFiniteInputError("a VAD window contains NaN or Inf; expected finite samples")
        self._input[0, self.context_samples:] = window
        if self._checked:
            # Hot path: the input row and the state are arrays this class built and the graph
            # returned, and the first call checked their layout against the card; re-checking
            # them on every 32 ms window cost about a quarter of the VAD's time (measured).
            probability, self._state["state_in"] = self._graph.run(
                self._output_names, {"audio": self._input, "state_in": self._state["state_in"]})
        else:
            outputs, self._state = self.session.run(self._input, self._state)
            probability = outputs["speech_probability"]
            self._checked = True
        # The next call's context: the last samples of this call's input (Silero: x[..., -64:]).
        self._input[0, :self.context_samples] = self._input[0, -self.context_samples:]
        return float(probability[0, 0])

    def probabilities(self, samples: np.ndarray) -> np.ndarray:
        """Per-window probabilities ``[ceil(N / window)]`` of a whole signal, from a fresh state.

        The last window is zero-padded, as in Silero's ``get_speech_timestamps``.
        """
        samples = np.asarray(samples, dtype=np.float32)
        if samples.ndim != 1:
            raise InvalidInputError(f"expected mono samples [N]; got shape {samples.shape}")
        self.reset()
        window = self.window_samples
        count = -(-samples.shape[0] // window)
        padded = np.zeros(count * window, dtype=np.float32)
        padded[:samples.shape[0]] = samples
        return np.array([self.probability(padded[k * window:(k + 1) * window]) for k in range(count)],
                        dtype=np.float32)

    def endpoint_detector(self, config: EndpointConfig | None = None) -> EndpointDetector:
        """An endpoint state machine matching this VAD's window size and rate."""
        return EndpointDetector(config or EndpointConfig(), sample_rate_hz=self.sample_rate_hz,
                                window_samples=self.window_samples)
