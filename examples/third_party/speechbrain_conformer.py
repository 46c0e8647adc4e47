"""SpeechBrain 1.x's streaming Conformer encoder, exported from SpeechBrain's own streaming code.

The model is ``speechbrain.lobes.models.transformer.TransformerASR`` with a Conformer encoder
(relative-position attention, Dynamic Chunk Convolution), configured as in SpeechBrain's
streaming recipes but small (random weights: the code is what matters). Its streaming API is
``encode_streaming(src, context)``: ``context`` is a ``TransformerASRStreamingContext``
dataclass holding the chunk config and, per layer, a ``ConformerEncoderLayerStreamingContext``
whose two tensors start as ``None`` and are *reassigned in place* on every call: the attention's
left context grows by one chunk per call up to ``chunk_size * left_context_size`` frames; the
convolution keeps its last ``(kernel_size - 1) // 2`` frames.

stateport flattens the context by path (``context.encoder_context.layers.0.mha_left_context``
-> port ``context_encoder_context_layers_0_mha_left_context``), keeps the config objects as they
are, and gives each tensor a fixed-size buffer plus a valid-length state (the runtime needs
static shapes, and zeros are not what the model starts from); the model is handed the valid
part only, so SpeechBrain's code runs as written. The offline reference is SpeechBrain's own
chunk-masked full forward, ``encode(src, dynchunktrain_config=cfg)``; the model is
chunk-exact (attention is masked in whole chunks), so every step takes one chunk of 8 frames.

    stateport export --module examples/third_party/speechbrain_conformer.py:model -o conformer.onnx

**torchaudio.** ``import speechbrain`` imports torchaudio, whose wheel here (2.11.1, the
newest) was built against another torch and cannot load its C extension next to torch 2.13
(``OSError: Could not load this library: .../torchaudio/lib/_torchaudio.so``). The encoder does
not use torchaudio, so when (and only when) the real import fails, a stand-in module named
``torchaudio`` is registered that raises on any use, and SpeechBrain is imported as shipped.
Nothing in site-packages is modified; with a working torchaudio the stand-in is never made.
"""

import functools
import sys
import types


def _stand_in_for_broken_torchaudio():
    """Register a placeholder ``torchaudio`` if the installed one cannot load (see above)."""
    try:
        import torchaudio  # noqa: F401
    except (OSError, ImportError) as e:
        reason = f"torchaudio cannot load here ({type(e).__name__}: {str(e).splitlines()[0]})"
        for name in [n for n in sys.modules if n == "torchaudio" or n.startswith("torchaudio.")]:
            del sys.modules[name]

        class _Unavailable(types.ModuleType):
            def __getattr__(self, attr):
                if attr.startswith("__"):
                    raise AttributeError(attr)
                raise ImportError(f"torchaudio.{attr}: {reason}")

        sys.modules["torchaudio"] = _Unavailable("torchaudio", reason)


_stand_in_for_broken_torchaudio()

from speechbrain.lobes.models.transformer.TransformerASR import TransformerASR  # noqa: E402
from speechbrain.utils.dynamic_chunk_training import DynChunkTrainConfig  # noqa: E402

from stateport.nn import declare_step  # noqa: E402

asr = TransformerASR(tgt_vocab=32, input_size=80, d_model=64, nhead=4, num_encoder_layers=2, num_decoder_layers=0,
                     d_ffn=128, kernel_size=15, attention_type="RelPosMHAXL", positional_encoding=None,
                     encoder_module="conformer", normalize_before=True, causal=False).eval()
cfg = DynChunkTrainConfig(chunk_size=8, left_context_size=2)  # 8-frame chunks, 16 frames of left context

# -- the declaration (4 lines) -------------------------------------------------------------
model = declare_step(asr, method="encode_streaming", input=("features", ("batch", "T", 80)), outputs=["encoded"],
                     states={"context": functools.partial(asr.make_streaming_context, cfg)},
                     reference=lambda x: asr.encode(x, dynchunktrain_config=cfg),
                     chunk=cfg.chunk_size, chunk_exact=True, architecture="speechbrain-conformer")
