"""Run a stateport ONNX file with ONNX Runtime alone, offline and streaming, from its card.

No stateport code: numpy, onnxruntime, and kaldi-native-fbank for the features the card's
``frontend`` describes (the same library the stateport runtime uses).

    python examples/onnxruntime_only.py MODEL.onnx AUDIO.wav

prints the main output's max |diff| between the streamed and the offline run. README.md quotes
the lines between the two ``README`` markers verbatim; tests/test_readme_snippet.py checks that,
and runs this file on the built-in model and on tiny exports.

Covers models with one input ``[batch, T, F]`` and no look-ahead, dynamic or ``--static``:
every built-in architecture (for ``rnnt``, its encoder graph). A model whose input has no time
axis (``frames_per_step`` 0, e.g. the seed article's LSTM cell) takes one frame ``[1, F]`` per
call; ``stateport.runtime`` drives every case.
"""

from __future__ import annotations

import json
import sys
import wave

import kaldi_native_fbank as knf
import numpy as np
import onnxruntime as ort

# The card's window names -> kaldi-native-fbank's (its "hann" is the periodic one).
KNF_WINDOWS = {"povey": "povey", "hann": "hanning", "hann-periodic": "hann", "hamming": "hamming"}


def features(samples: np.ndarray, fe: dict) -> np.ndarray:
    """Features ``[T, F]`` float32 of float samples ``[N]`` in [-1, 1], as the card's ``frontend`` says."""
    opts = knf.MfccOptions() if fe["kind"] == "mfcc" else knf.FbankOptions()
    if fe["kind"] == "mfcc":
        opts.num_ceps, opts.cepstral_lifter = fe["num_ceps"], fe["cepstral_lifter"]
    f = opts.frame_opts
    f.samp_freq, f.frame_length_ms, f.frame_shift_ms = float(fe["sample_rate_hz"]), fe["frame_length_ms"], fe["frame_shift_ms"]
    f.dither, f.preemph_coeff, f.remove_dc_offset = 0.0, fe["preemphasis"], fe["remove_dc_offset"]
    f.window_type, f.snip_edges = KNF_WINDOWS[fe["window"]], fe["snip_edges"]
    m = opts.mel_opts
    m.num_bins, m.low_freq, m.high_freq = fe["num_mel_bins"], fe["low_freq_hz"], fe["high_freq_hz"]
    if fe["mel_filters"] == "slaney":  # librosa's default filters
        m.is_librosa, m.use_slaney_mel_scale, m.norm = True, True, "slaney"
    opts.use_energy, opts.energy_floor, opts.raw_energy = fe["use_energy"], fe["energy_floor"], True
    computer = knf.OnlineMfcc(opts) if fe["kind"] == "mfcc" else knf.OnlineFbank(opts)
    computer.accept_waveform(float(fe["sample_rate_hz"]), (samples * fe["input_scale"]).astype(np.float32))
    computer.input_finished()
    return np.array([computer.get_frame(i) for i in range(computer.num_frames_ready)], np.float32)


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV file as mono float samples ``[N]`` in [-1, 1], and its sample rate."""
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise SystemExit(f"{path}: expected 16-bit PCM, got {8 * w.getsampwidth()}-bit")
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, w.getnchannels())
        return pcm.mean(axis=1).astype(np.float32) / 32768.0, w.getframerate()


def run(model: str, samples: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """The main output ``[T_out, ...]`` of ``samples`` offline (None for a ``--static`` export) and streamed."""
    # --- quoted in docs/onnxruntime-only.md: begin
    sess = ort.InferenceSession(model)
    card = json.loads(sess.get_modelmeta().custom_metadata_map["stateport"])
    st, fe, ports = card["streaming"], card["frontend"], card["ports"]
    x_name = next(p["name"] for p in ports if p["role"] == "input")
    y_name = next(p["name"] for p in ports if p["role"] == "output")
    states = [p for p in ports if p["role"] == "state"]

    # Chunk lengths must be multiples of frame_multiple, at least min_frames, and exactly
    # frames_per_step for a --static export: stream in frames_per_step chunks, padding the
    # last one with frames of digital silence; drop the outputs of padded frames at the end.
    n = st["frames_per_step"]
    feats = features(samples, fe)                                               # [T, F]
    silence = features(np.zeros(st["sample_rate_hz"], np.float32), fe)[:1]     # [1, F]
    x = np.concatenate([feats, np.repeat(silence, -len(feats) % n, axis=0)])[None]
    keep = -(-len(feats) // st["subsampling"])                                  # real output frames

    # Offline: the features alone; every state starts from its default (the card's init).
    offline = None if st["static"] else sess.run([y_name], {x_name: x})[0][0, :keep]

    # Streaming: every state starts at the card's init (not zeros); each *_out goes back into its *_in.
    state = {s["name"]: np.full([1 if a == s["batch_axis"] else d for a, d in enumerate(s["shape"])],
                                s["init"], s["dtype"]) for s in states}
    fetch, chunks = [y_name] + [s["output"] for s in states], []
    for t in range(0, x.shape[1], n):
        y, *new_state = sess.run(fetch, {x_name: x[:, t:t + n], **state})
        state = {s["name"]: v for s, v in zip(states, new_state)}
        chunks.append(y[0])
    streamed = np.concatenate(chunks)[:keep]
    # --- quoted in docs/onnxruntime-only.md: end
    return offline, streamed


def supported_card(model: str) -> dict:
    """The card of a model this script covers, or exit with a one-line reason (see the module docstring)."""
    meta = ort.InferenceSession(model).get_modelmeta().custom_metadata_map
    if "stateport" not in meta:
        raise SystemExit(f"{model}: no stateport card in the file's metadata")
    card = json.loads(meta["stateport"])
    inputs = [p for p in card["ports"] if p["role"] == "input"]
    if len(inputs) != 1 or inputs[0].get("time_axis") != 1 or len(inputs[0]["shape"]) != 3:
        raise SystemExit(f"{model}: this script covers one input [batch, T, F]; stateport.runtime drives the rest")
    if card["streaming"]["lookahead_frames"] or not card.get("frontend"):
        raise SystemExit(f"{model}: look-ahead, or no frontend in the card; stateport.runtime drives these")
    return card


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python examples/onnxruntime_only.py MODEL.onnx AUDIO.wav", file=sys.stderr)
        return 2
    model, audio = argv
    ort.set_default_logger_severity(3)  # state inputs are also initializers by design: not a warning
    rate_hz = supported_card(model)["streaming"]["sample_rate_hz"]
    samples, file_rate_hz = read_wav(audio)
    if file_rate_hz != rate_hz:
        raise SystemExit(f"{audio}: {file_rate_hz} Hz; this model takes {rate_hz} Hz (resample it first, e.g. with soxr)")
    offline, streamed = run(model, samples)
    print(f"{streamed.shape[0]} output frames streamed")
    if offline is not None:
        print(f"max |streamed - offline| = {float(np.max(np.abs(streamed - offline))):.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
