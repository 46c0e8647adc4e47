"""Token parity in sherpa-onnx itself: one ``--backend sherpa-onnx`` export, decoded by
``sherpa_onnx.OnlineRecognizer`` (its C++ runtime) and by ``stateport.Recognizer``.

A transducer (``lstm-transducer``, sherpa-onnx's ``model_type=lstm``) and a CTC model
(``lstm-ctc`` on NeMo's features, in sherpa-onnx's online NeMo CTC contract).

60 s of real speech (the shipped digit clips), two chunk sizes (T = 39 frames advancing 32, and
T = 11 advancing 4), one stream and a batch of streams through each runtime's
``decode_streams``: the token sequences must be identical.

How the two ends are lined up (the one place the runtimes differ, documented in
docs/sherpa-onnx.md): sherpa-onnx runs a chunk only while ``processed + T < frames ready``, so
it never runs a partial chunk and always leaves at least one frame unused; our runtime runs
every full chunk and then the rest (dropping only look-ahead frames). Both are given the same
audio followed by digital silence, ours ending exactly on a chunk boundary plus the 7
look-ahead frames and sherpa-onnx's one frame later: both then run the same chunks over the
same frames, and nothing else may differ.
"""

import numpy as np
import pytest

from stateport.errors import UnsupportedError
from stateport.export import export_model, export_torch_model
from stateport.export.backends.sherpa_onnx import sherpa_nemo_fbank, sherpa_paths
from stateport.export.sources import build_model
from stateport.runtime import Recognizer
from stream_helpers import shipped_speech

sherpa_onnx = pytest.importorskip("sherpa_onnx", reason="sherpa-onnx is not installed (pip install "
                                                       "'stateport[sherpa]')")

SECONDS = 60.0
HOP_SAMPLES = 160
LOOKAHEAD_FRAMES = 7


@pytest.fixture(scope="module", params=[(39, 32), (11, 4)], ids=["T39-shift32", "T11-shift4"])
def export(request, tmp_path_factory):
    chunk, shift = request.param
    out = tmp_path_factory.mktemp("sherpa") / f"lstm-transducer-T{chunk}"
    export_model(out, arch="lstm-transducer", size="tiny", backend="sherpa-onnx", chunk_frames=chunk, seconds=5.0)
    return str(out), shift


def lined_up(audio: np.ndarray, shift: int, lookahead: int = LOOKAHEAD_FRAMES) -> tuple:
    """(ours, sherpa's): ``audio`` + silence so that both runtimes run the same chunks over the same frames."""
    frames = audio.shape[0] // HOP_SAMPLES + 20  # at least 200 ms of silence after the speech
    chunks = -(-(frames - lookahead) // shift)
    total_frames = chunks * shift + lookahead  # snip_edges=false: frames = samples / hop
    ours = np.concatenate([audio, np.zeros(total_frames * HOP_SAMPLES - audio.shape[0], np.float32)])
    return ours, np.concatenate([ours, np.zeros(HOP_SAMPLES, np.float32)])


def finished_streams(rec, audios: list) -> list:
    """One stream per recording, all of it accepted and input_finished() (the same API in both runtimes)."""
    streams = []
    for audio in audios:
        s = rec.create_stream()
        s.accept_waveform(16000, audio)
        s.input_finished()
        streams.append(s)
    return streams


def sherpa_tokens(folder: str, audios: list, *, ctc: bool = False) -> list:
    if ctc:
        rec = sherpa_onnx.OnlineRecognizer.from_nemo_ctc(tokens=f"{folder}/tokens.txt", model=f"{folder}/model.onnx",
                                                         num_threads=1)
    else:
        rec = sherpa_onnx.OnlineRecognizer.from_transducer(**sherpa_paths(folder), num_threads=1)
    streams = finished_streams(rec, audios)
    while True:
        ready = [s for s in streams if rec.is_ready(s)]
        if not ready:
            break
        rec.decode_streams(ready)
    return [list(rec.get_result_all(s).tokens) for s in streams]


def our_tokens(folder: str, audios: list) -> list:
    rec = Recognizer.from_file(folder, tail_padding_ms=0)  # the silence is in the audio, as for sherpa-onnx
    streams = finished_streams(rec, audios)
    live = streams
    while live:
        rec.decode_streams(live)
        live = [s for s in live if rec.is_ready(s)]
    return [list(rec.get_result(s).token_texts) for s in streams]


def test_sixty_seconds_decode_to_identical_tokens(export):
    folder, shift = export
    ours, theirs = lined_up(shipped_speech(SECONDS), shift)
    (expected,) = sherpa_tokens(folder, [theirs])
    (got,) = our_tokens(folder, [ours])
    # Not trivially blank: the untrained model emits on a good share of the 1500 encoder frames,
    # several different tokens, and nothing on others.
    assert 100 < len(expected) < 1400 and len(set(expected)) >= 5
    assert got == expected


def test_batched_streams_decode_to_identical_tokens(export):
    """Four streams of different lengths through each runtime's own batching (decode_streams)."""
    folder, shift = export
    speech = shipped_speech(SECONDS)
    pairs = [lined_up(speech[a:a + n], shift) for a, n in ((0, 16000 * 12), (16000 * 7, 16000 * 20),
                                                           (16000 * 30, 16000 * 9), (16000 * 41, 16000 * 19))]
    expected = sherpa_tokens(folder, [t for _, t in pairs])
    got = our_tokens(folder, [o for o, _ in pairs])
    assert all(len(e) > 10 for e in expected)
    assert got == expected


# ---------------------------------------------------------------------- CTC
@pytest.fixture(scope="module")
def ctc_export(tmp_path_factory):
    """lstm-ctc tiny (random weights) declared as trained on NeMo's features, in sherpa-onnx's NeMo CTC folder."""
    model, provenance = build_model(arch="lstm-ctc", size="tiny")
    model.streaming.frontend = sherpa_nemo_fbank(80)
    out = tmp_path_factory.mktemp("sherpa-ctc") / "lstm-ctc"
    result = export_torch_model(model, out, backend="sherpa-onnx", provenance=provenance, seconds=5.0)
    assert result.passed and sorted(p.name for p in out.iterdir()) == ["model.onnx", "tokens.txt"]
    return str(out), result.graphs["model"].card.streaming.frames_advanced_per_step


def test_ctc_sixty_seconds_and_batched_streams_decode_to_identical_tokens(ctc_export):
    folder, shift = ctc_export
    speech = shipped_speech(SECONDS)
    ours, theirs = lined_up(speech, shift, lookahead=0)
    (expected,) = sherpa_tokens(folder, [theirs], ctc=True)
    (got,) = our_tokens(folder, [ours])
    assert len(expected) > 100 and len(set(expected)) >= 5
    assert got == expected
    pairs = [lined_up(speech[a:a + n], shift, lookahead=0) for a, n in ((0, 16000 * 12), (16000 * 7, 16000 * 20),
                                                                        (16000 * 30, 16000 * 9))]
    assert our_tokens(folder, [o for o, _ in pairs]) == sherpa_tokens(folder, [t for _, t in pairs], ctc=True)


def test_ctc_on_features_sherpa_does_not_compute_is_refused(tmp_path):
    """The built-in architectures' Kaldi fbank (povey window) is not what sherpa-onnx computes for NeMo CTC."""
    with pytest.raises(UnsupportedError, match=r"features sherpa-onnx does not compute for NeMo CTC.*window"):
        export_model(tmp_path / "m", arch="lstm-ctc", size="tiny", backend="sherpa-onnx", verify=False)
    assert not (tmp_path / "m").exists()
