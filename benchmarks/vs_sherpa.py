"""Head to head: our runtime against sherpa-onnx's C++ runtime, same model, same audio, one thread.

    python benchmarks/vs_sherpa.py [--size small] [--chunks 39 11] [--streams 1 4 16]
                                   [--seconds 60] [--repeats 5] [--checkpoint CKPT] [--json]

One ``lstm-transducer`` export per chunk size (``stateport export --backend sherpa-onnx
--chunk-frames T``: T frames per step, T - 7 advanced), random weights unless ``--checkpoint``.
For each chunk size and stream count N, N streams of ``--seconds`` of different speech (the
shipped digit clips, each stream starting elsewhere) are decoded by

- sherpa-onnx: ``OnlineRecognizer.from_transducer(..., num_threads=1)``; every stream created,
  given its audio with ``accept_waveform`` and ``input_finished()``, then
  ``decode_streams(ready)`` until none is ready (``decode_stream`` for one stream);
- ours: ``stateport.Recognizer.from_file(DIR, threads=1)``, the same calls.

Both times include everything an application pays for: creating the streams, the features
(sherpa-onnx computes them in ``accept_waveform``, ours in the decoding steps), the encoder, the
greedy search and the end of input. The audio carries its own trailing silence for both and
our end-of-input flush is off, lined up as in tests/export/test_sherpa_onnx.py, so that the
two runtimes run the same chunks; the tokens are checked to be identical. Each cell is the
median of ``--repeats`` runs, the two runtimes taking turns, and the ratio is ours / sherpa-onnx
(below 1: we are faster). A benchmark, not a test: its numbers depend on the machine (and on
whatever else runs on it).

``--breakdown``: where the time goes, from one more run of each cell (not one of the timed ones):
sherpa-onnx's ``accept_waveform`` (its features) and its decoding; our features
(kaldi-native-fbank), our ONNX Runtime calls and the rest (our Python loop and search).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

HOP_SAMPLES = 160
LOOKAHEAD_FRAMES = 7


def speech(seconds: float, offset_s: float) -> np.ndarray:
    """``seconds`` of the shipped digit clips (FSDD, CC BY-SA 4.0), looped, starting ``offset_s`` in."""
    import soundfile as sf

    from stateport.assets import builtin_dir

    clips = [sf.read(p, dtype="float32")[0] for p in sorted((builtin_dir() / "clips").glob("*.wav"))]
    loop = np.concatenate(clips)
    start = int(offset_s * 16000) % loop.shape[0]
    want = int(seconds * 16000)
    reps = -(-(start + want) // loop.shape[0])
    return np.tile(loop, reps)[start:start + want].astype(np.float32)


def lined_up(audio: np.ndarray, shift: int) -> tuple:
    """(ours, sherpa-onnx's): the audio plus silence ending on a chunk boundary (+7 look-ahead frames)
    for ours and one frame later for sherpa-onnx, so both run the same chunks (see the test)."""
    frames = audio.shape[0] // HOP_SAMPLES + 20
    chunks = -(-(frames - LOOKAHEAD_FRAMES) // shift)
    total = (chunks * shift + LOOKAHEAD_FRAMES) * HOP_SAMPLES
    ours = np.concatenate([audio, np.zeros(total - audio.shape[0], np.float32)])
    return ours, np.concatenate([ours, np.zeros(HOP_SAMPLES, np.float32)])


def decode_all(rec, audios: list, ready, step_one, step_many, result) -> tuple:
    """Seconds to decode ``audios`` as streams of ``rec``, and each stream's tokens."""
    t0 = time.perf_counter()
    streams = []
    for audio in audios:
        s = rec.create_stream()
        s.accept_waveform(16000, audio)
        s.input_finished()
        streams.append(s)
    if len(streams) == 1:
        (s,) = streams
        while ready(s):
            step_one(s)
    else:
        live = [s for s in streams if ready(s)]
        while live:
            step_many(live)
            live = [s for s in live if ready(s)]
    elapsed = time.perf_counter() - t0
    return elapsed, [result(s) for s in streams]


class Clock:
    """Seconds spent inside wrapped callables, by label (for --breakdown)."""

    def __init__(self):
        self.seconds: dict = {}

    def wrap(self, label: str, fn):
        def timed(*args, _fn=fn, _label=label):
            t0 = time.perf_counter()
            try:
                return _fn(*args)
            finally:
                self.seconds[_label] = self.seconds.get(_label, 0.0) + time.perf_counter() - t0
        return timed


def breakdown(ours, theirs, inputs: dict) -> dict:
    """One instrumented run of each runtime: seconds in features, ONNX Runtime and the rest."""
    from stateport.runtime import features

    clock = Clock()
    sessions = [ours.graphs.encoder, ours.graphs.predictor, ours.graphs.joiner] if ours.graphs else [ours.session]
    saved = [(s, s._raw_run) for s in sessions]
    accept = features.KaldiStream.accept
    try:
        for s, run in saved:
            s._raw_run = clock.wrap("onnxruntime", run)
        features.KaldiStream.accept = clock.wrap("features", accept)
        elapsed, _ = decode_all(ours, inputs["stateport"], ours.is_ready, ours.decode_stream, ours.decode_streams,
                                lambda s: None)
    finally:
        for s, run in saved:
            s._raw_run = run
        features.KaldiStream.accept = accept
    row = {"stateport_features_s": clock.seconds.get("features", 0.0),
           "stateport_onnxruntime_s": clock.seconds.get("onnxruntime", 0.0)}
    row["stateport_rest_s"] = elapsed - row["stateport_features_s"] - row["stateport_onnxruntime_s"]
    t0 = time.perf_counter()
    streams = []
    for audio in inputs["sherpa-onnx"]:
        s = theirs.create_stream()
        s.accept_waveform(16000, audio)
        s.input_finished()
        streams.append(s)
    t1 = time.perf_counter()
    live = [s for s in streams if theirs.is_ready(s)]
    while live:
        theirs.decode_streams(live) if len(streams) > 1 else theirs.decode_stream(live[0])
        live = [s for s in live if theirs.is_ready(s)]
    row.update(sherpa_onnx_features_s=t1 - t0, sherpa_onnx_decode_s=time.perf_counter() - t1)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="small", help="lstm-transducer size (tiny, small, default)")
    p.add_argument("--checkpoint", help="weights to export instead of random ones")
    p.add_argument("--chunks", type=int, nargs="+", default=[39, 11], help="T: frames per step (7 + a multiple of 4)")
    p.add_argument("--streams", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--seconds", type=float, default=60.0, help="audio per stream")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--breakdown", action="store_true", help="also time features / ONNX Runtime / the rest")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)

    import sherpa_onnx

    from stateport.export import export_model
    from stateport.export.backends.sherpa_onnx import sherpa_paths
    from stateport.runtime import Recognizer

    rows = []
    with tempfile.TemporaryDirectory(prefix="stateport-vs-sherpa-") as work:
        for chunk in args.chunks:
            folder = os.path.join(work, f"T{chunk}")
            export_model(folder, arch="lstm-transducer", size=None if args.checkpoint else args.size,
                         checkpoint=args.checkpoint, backend="sherpa-onnx", chunk_frames=chunk, seconds=2.0)
            shift = chunk - LOOKAHEAD_FRAMES
            theirs = sherpa_onnx.OnlineRecognizer.from_transducer(**sherpa_paths(folder), num_threads=1)
            ours = Recognizer.from_file(folder, threads=1, tail_padding_ms=0)
            runners = {
                "sherpa-onnx": lambda audios: decode_all(theirs, audios, theirs.is_ready, theirs.decode_stream,
                                                         theirs.decode_streams,
                                                         lambda s: list(theirs.get_result_all(s).tokens)),
                "stateport": lambda audios: decode_all(ours, audios, ours.is_ready, ours.decode_stream,
                                                       ours.decode_streams,
                                                       lambda s: list(ours.get_result(s).token_texts)),
            }
            for n in args.streams:
                pairs = [lined_up(speech(args.seconds, 7.3 * k), shift) for k in range(n)]
                inputs = {"stateport": [o for o, _ in pairs], "sherpa-onnx": [t for _, t in pairs]}
                times = {name: [] for name in runners}
                tokens = {}
                for _ in range(args.repeats):
                    for name, run in runners.items():
                        elapsed, tokens[name] = run(inputs[name])
                        times[name].append(elapsed)
                audio_s = n * args.seconds
                med = {name: statistics.median(t) for name, t in times.items()}
                rows.append({"T": chunk, "shift": shift, "streams": n, "audio_s": audio_s,
                             "sherpa_onnx_s": med["sherpa-onnx"], "stateport_s": med["stateport"],
                             "ratio": med["stateport"] / med["sherpa-onnx"],
                             "sherpa_onnx_rtf": med["sherpa-onnx"] / audio_s, "stateport_rtf": med["stateport"] / audio_s,
                             "tokens_identical": tokens["stateport"] == tokens["sherpa-onnx"],
                             "tokens": sum(len(t) for t in tokens["sherpa-onnx"])})
                if args.breakdown:
                    rows[-1].update(breakdown(ours, theirs, inputs))
                if not args.json:
                    r = rows[-1]
                    print(f"T={chunk:3d} (shift {shift:2d}) streams={n:3d}: sherpa-onnx {r['sherpa_onnx_s']:.3f} s "
                          f"(RTF {r['sherpa_onnx_rtf']:.4f}), stateport {r['stateport_s']:.3f} s "
                          f"(RTF {r['stateport_rtf']:.4f}), ratio {r['ratio']:.2f}x, tokens identical: "
                          f"{r['tokens_identical']} ({r['tokens']})", flush=True)
                    if args.breakdown:
                        print(f"    sherpa-onnx: features {r['sherpa_onnx_features_s']:.3f} s, decoding "
                              f"{r['sherpa_onnx_decode_s']:.3f} s; stateport: features {r['stateport_features_s']:.3f} s, "
                              f"onnxruntime {r['stateport_onnxruntime_s']:.3f} s, rest {r['stateport_rest_s']:.3f} s",
                              flush=True)
    meta = {"size": args.size, "checkpoint": args.checkpoint, "seconds": args.seconds, "repeats": args.repeats,
            "sherpa_onnx": sherpa_onnx.__version__ if hasattr(sherpa_onnx, "__version__") else "?",
            "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", "python": platform.python_version()}
    if args.json:
        print(json.dumps({"meta": meta, "rows": rows}, indent=2))
    else:
        print("\n| T (shift) | streams | sherpa-onnx RTF | stateport RTF | stateport / sherpa-onnx |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['T']} ({r['shift']}) | {r['streams']} | {r['sherpa_onnx_rtf']:.4f} | {r['stateport_rtf']:.4f} | "
                  f"{r['ratio']:.2f}x |")
    return 0 if all(r["tokens_identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
