"""The client runtime: numpy + onnxruntime (+ kaldi-native-fbank, soxr, soundfile), never torch.

:class:`Recognizer` (one model, shared) and :class:`Stream` (one conversation) are the API;
:func:`transcribe_file` is the one-liner. The pieces: :mod:`.session` (the card-driven ONNX
step, trust on load), :mod:`.features` (the feature stage), :mod:`.outputs` (one decoder per
output kind), :mod:`.endpoint` (VAD endpointing), :mod:`.batching` (stacking states by the
card's batch axes), :mod:`.streamer` (the event-level adapter), :mod:`.pacing` (real time).
"""

_LAZY = {
    "Recognizer": "recognizer", "RecognizerOptions": "recognizer", "Stream": "recognizer",
    "transcribe_file": "recognizer", "OnnxStepSession": "session", "Streamer": "streamer",
    "StreamerOptions": "streamer", "EndpointConfig": "endpoint", "StreamResult": "events",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
