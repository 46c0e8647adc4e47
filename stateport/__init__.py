"""stateport: streaming speech models from PyTorch to edge devices, with explicit state.

The client API (numpy + onnxruntime, never torch)::

    import stateport
    print(stateport.transcribe_file("digits.wav").text)       # the built-in digit recogniser
    rec = stateport.Recognizer.from_file("model.onnx")          # any stateport model: one per model
    s = rec.create_stream(); s.accept_waveform(16000, samples); s.input_finished()
    while rec.is_ready(s): rec.decode_streams([s])
    rec.get_result(s).text

Importing the package imports neither torch nor onnxruntime: the names above load
``stateport.runtime`` on first use. The torch side lives in ``stateport.nn``, ``stateport.zoo``
and ``stateport.export`` (the ``export`` extra).
"""

__version__ = "0.1.0"

# Public name -> the runtime module that defines it, imported on first access (PEP 562).
_LAZY = {
    "Recognizer": "stateport.runtime.recognizer",
    "RecognizerOptions": "stateport.runtime.recognizer",
    "Stream": "stateport.runtime.recognizer",
    "transcribe_file": "stateport.runtime.recognizer",
    "EndpointConfig": "stateport.runtime.endpoint",
    "StreamResult": "stateport.runtime.events",
    "Streamer": "stateport.runtime.streamer",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stateport' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))
