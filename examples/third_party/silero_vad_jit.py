"""Silero VAD's packaged TorchScript model, exported with its hidden state lifted.

``silero_vad.load_silero_vad(onnx=False)`` returns a ``torch.jit.ScriptModule`` whose
``forward(x, sr)`` keeps its LSTM state and 64 samples of audio context in module attributes
(``self._state``, ``self._context``, both empty tensors until the first call), plus the last
sample rate and batch size as plain ints. stateport reads the scripted graph, turns the two
tensor attributes into the state ports ``state_in -> state_out`` ([2, batch, 128]) and
``context_in -> context_out`` ([batch, 64]), holds the two ints at their fresh values (they
only trigger a reset when the rate or batch size changes) and binds ``sr=16000``. The package's
code and model file are used as shipped.

    stateport export --module examples/third_party/silero_vad_jit.py:model -o silero_vad.onnx

Silero also ships an ONNX model with explicit state (``silero_vad/data/silero_vad.onnx``, run
by ``stateport.runtime.vad.SileroVad``); the gallery test compares the two on the same audio.
"""

import torch

from stateport.nn import declare_step

# Importing silero_vad sets torch's intra-op threads to 1 for the whole process; put them back.
_threads = torch.get_num_threads()
import silero_vad  # noqa: E402

vad = silero_vad.load_silero_vad(onnx=False)
torch.set_num_threads(_threads)

# -- the declaration (3 lines): 512 samples per call at 16 kHz, sr bound -----------------------
model = declare_step(vad, input=("audio", ("batch", 512)), outputs=["speech_probability"],
                     bind={"sr": 16000}, architecture="silero-vad",
                     streaming={"sample_rate_hz": 16000, "frame_hop_samples": 512, "output_kind": "vad"})
