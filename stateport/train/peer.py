"""A real peer on the same audio: PocketSphinx with a digits grammar.

PocketSphinx (CMU; ``pip install pocketsphinx``, 5.x ships its US-English acoustic model and
dictionary in the wheel) is a speaker-independent recogniser trained on many real speakers.
Restricted by a JSGF grammar to digit strings of any length (``zero`` or ``oh`` for 0; the
empty string allowed, so silence can come back empty), it is the classic small-footprint
digit recogniser our model is measured against (issue 21). Its own ``dither`` is on (half a
bit of noise, seeded): without it, digital silence gave it a digit ("one", "six"; measured).
It decodes whole utterances here,
one thread (PocketSphinx has no others), from 16 kHz 16-bit samples, as its model expects.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError, MissingDependencyError
from ..vocabulary import DIGIT_VOCABULARY

DIGITS_JSGF = """#JSGF V1.0;
grammar digits;
public <digits> = <digit>*;
<digit> = zero | oh | one | two | three | four | five | six | seven | eight | nine;
"""
"""Digit strings of any length, the empty one included; "oh" is zero."""

PEER_SAMPLE_RATE_HZ = 16_000
_WORD_TO_TOKEN = {w: i for i, w in enumerate(DIGIT_VOCABULARY)} | {"oh": DIGIT_VOCABULARY.index("zero")}


def pocketsphinx_version() -> str:
    from importlib.metadata import version

    return version("pocketsphinx")


class PocketSphinxDigits:
    """PocketSphinx 5.x restricted to :data:`DIGITS_JSGF`: ``transcribe(16 kHz float32 [N]) -> token ids``.

    Token ids are this project's (:data:`stateport.vocabulary.DIGIT_VOCABULARY`), so its
    output is scored exactly like ours. Fillers and silences it reports are dropped.
    """

    name = "PocketSphinx 5 + digits JSGF"
    sample_rate_hz = PEER_SAMPLE_RATE_HZ

    def __init__(self):
        try:
            import pocketsphinx
        except ImportError as e:
            raise MissingDependencyError("the PocketSphinx peer needs pocketsphinx: pip install 'stateport[eval]'") from e
        config = pocketsphinx.Config(hmm=pocketsphinx.get_model_path("en-us/en-us"),
                                     dict=pocketsphinx.get_model_path("en-us/cmudict-en-us.dict"),
                                     lm=None, loglevel="FATAL", dither=True, seed=1)
        self._decoder = pocketsphinx.Decoder(config)
        self._decoder.add_jsgf_string("digits", DIGITS_JSGF)
        self._decoder.activate_search("digits")
        self.version = pocketsphinx_version()

    def transcribe(self, waveform: np.ndarray) -> list[int]:
        """Token ids of one whole utterance (float32 [N] in [-1, 1] at 16 kHz)."""
        x = np.asarray(waveform)
        if x.ndim != 1 or x.dtype.kind != "f":
            raise InvalidInputError(f"expected mono float samples [N], got {x.dtype} {x.shape}")
        pcm = (np.clip(x, -1.0, 1.0) * 32767.0).astype(np.int16).tobytes()
        d = self._decoder
        d.start_utt()
        d.process_raw(pcm, full_utt=True)
        d.end_utt()
        hyp = d.hyp()
        words = hyp.hypstr.split() if hyp is not None else []
        return [_WORD_TO_TOKEN[w] for w in words if w in _WORD_TO_TOKEN]
