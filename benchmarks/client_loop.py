"""Cost of the client loop around the model, and of our Silero VAD wrapper, measured in one run.

    python benchmarks/client_loop.py [--size default] [--seconds 60] [--read-ms 20] [--repeats 10] [--json]

1. One ``Recognizer`` stream over a ``--seconds`` signal read ``--read-ms`` at a time
   (``accept_waveform`` per read, ``is_ready`` / ``decode_stream`` whenever a step is ready:
   checks, ring buffer, features, state loop, greedy CTC, the end-of-input flush) against, on the
   same audio in the same run:
   - features: the same frames computed offline (kaldi-native-fbank over the whole signal plus
     the flush), the work the loop cannot avoid;
   - bare session.run: ONNX Runtime's own ``run`` over those frames in the loop's chunks, the
     state fed back by hand (the model alone).
   The loop overhead is loop - features - bare session.run (goal: <= 10 % of the loop).
   - a minimal hand-written client: the same kaldi-native-fbank extractor fed one chunk of audio
     per step, its frames straight into ONNX Runtime, the state fed back; no checks, no ring
     buffer, no decoding. Features and model then take turns as in any real client (each evicts
     the other's data from the caches), which the offline figures above do not show; loop /
     minimal is what the runtime's machinery adds to that unavoidable work.
2. Our torch-free ``SileroVad`` against Silero's own ``OnnxWrapper`` (torch) on the same
   audio, window by window (goal: no slower).

Audio: FSDD digits with silences when shared/data/fsdd is there, else noise. Models have
random weights (the cost does not depend on them). Best of ``--repeats`` for every timing,
the compared functions taking turns within each repeat.
A benchmark, not a test: it asserts nothing and its numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import tempfile
import time

import numpy as np

FSDD = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "fsdd", "recordings")


def test_audio(seconds: float, rate_hz: int = 16000) -> np.ndarray:
    from stateport.runtime.resample import resample

    total = int(seconds * rate_hz)
    files = sorted(glob.glob(os.path.join(FSDD, "*.wav")))
    if not files:
        return (0.1 * np.random.default_rng(0).standard_normal(total)).astype(np.float32)
    import soundfile as sf

    parts, length, k = [], 0, 0
    while length < total:
        x, sr = sf.read(files[(k * 37) % len(files)], dtype="float32")
        x = resample(x, sr, rate_hz)
        gap = np.zeros(int(0.3 * rate_hz), np.float32)
        parts += [x, gap]
        length += x.shape[0] + gap.shape[0]
        k += 1
    return np.concatenate(parts)[:total]


def best_of(repeats: int, *fns) -> list:
    """Best time of each function; the functions take turns in every repeat, so that a busy
    spell on a shared machine hits them alike instead of one of them."""
    best = [float("inf")] * len(fns)
    for _ in range(repeats):
        for k, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def bench_loop(path: str, audio: np.ndarray, read_samples: int, repeats: int) -> dict:
    from stateport.runtime.frontend import FrontendConfig, StreamingFrontend, compute_features
    from stateport.runtime.recognizer import Recognizer

    rec = Recognizer.from_file(path, allow_uncertified=True)  # random weights: the cost does not depend on them
    card = rec.card
    config = FrontendConfig.from_dict(card.frontend)
    heard = np.concatenate([audio, np.zeros(int(round(rec.tail_padding_ms * 16)), np.float32)])
    feats = compute_features(heard, config)
    chunk = card.streaming.frames_per_step
    chunks = [feats[None, a:a + chunk] for a in range(0, feats.shape[0], chunk)]
    ort, names = rec.session.session, card.output_names
    states = [s.name for s in card.states]
    n_out = len(card.outputs)

    def client_loop():
        stream = rec.create_stream()
        for a in range(0, audio.shape[0], read_samples):
            stream.accept_waveform(16000, audio[a:a + read_samples])
            while rec.is_ready(stream):
                rec.decode_stream(stream)
        stream.input_finished()
        while rec.is_ready(stream):
            rec.decode_stream(stream)
        assert stream.counters.steps == len(chunks)

    def bare_session():
        feeds = dict(rec.session.init_state(1))
        for x in chunks:
            feeds[card.inputs[0].name] = x
            values = ort.run(names, feeds)
            feeds.update(zip(states, values[n_out:]))

    def features_offline():
        compute_features(heard, config)

    step_samples = chunk * config.frame_shift_samples

    def minimal_client():
        fe = StreamingFrontend(config)
        feeds = dict(rec.session.init_state(1))
        done = 0
        for a in range(0, heard.shape[0], step_samples):
            fe.accept_waveform(heard[a:a + step_samples])
            if a + step_samples >= heard.shape[0]:
                fe.input_finished()
            while fe.num_frames_ready >= chunk or (fe.is_finished and fe.num_frames_ready):
                feeds[card.inputs[0].name] = fe.pop_frames(chunk)[None]
                values = ort.run(names, feeds)
                feeds.update(zip(states, values[n_out:]))
                done += 1
        assert done == len(chunks)

    loop_s, bare_s, features_s, minimal_s = best_of(repeats, client_loop, bare_session, features_offline,
                                                    minimal_client)
    overhead_s = loop_s - features_s - bare_s
    return {"client_loop_s": loop_s, "bare_session_run_s": bare_s, "features_offline_s": features_s,
            "steps": len(chunks), "overhead_share_of_loop": overhead_s / loop_s,
            "ratio_vs_bare_session": loop_s / bare_s,
            "ratio_vs_features_plus_session": loop_s / (features_s + bare_s),
            "per_step_overhead_us": 1e6 * overhead_s / len(chunks), "minimal_client_s": minimal_s,
            "ratio_vs_minimal_client": loop_s / minimal_s,
            "per_step_over_minimal_us": 1e6 * (loop_s - minimal_s) / len(chunks),
            "rtf": loop_s / (audio.shape[0] / 16000)}


def bench_vad(audio: np.ndarray, repeats: int) -> dict | None:
    from stateport.runtime.vad import SileroVad, silero_model_path

    try:
        import torch
        from silero_vad.utils_vad import OnnxWrapper
    except ImportError:
        return None
    torch.set_num_threads(1)
    ours = SileroVad()
    theirs = OnnxWrapper(str(silero_model_path()), force_onnx_cpu=True)
    windows = audio[:audio.shape[0] // 512 * 512].reshape(-1, 512)
    tensors = [torch.from_numpy(w.copy()) for w in windows]

    def run_ours():
        ours.reset()
        for w in windows:
            ours.probability(w)

    def run_theirs():
        theirs.reset_states()
        for w in tensors:
            theirs(w, 16000)

    ours_s, theirs_s = best_of(repeats, run_ours, run_theirs)
    return {"windows": len(windows), "ours_s": ours_s, "silero_wrapper_s": theirs_s,
            "ratio_ours_vs_silero": ours_s / theirs_s, "ours_us_per_window": 1e6 * ours_s / len(windows),
            "silero_us_per_window": 1e6 * theirs_s / len(windows)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="lstm-ctc")
    ap.add_argument("--size", action="append", help="model size(s) (default: tiny and default)")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--read-ms", type=float, default=20.0)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from stateport.export import export_model

    audio = test_audio(args.seconds)
    read_samples = int(args.read_ms * 16)
    doc = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
           "seconds": args.seconds, "read_ms": args.read_ms, "loop": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.size or ["tiny", "default"]:
            path = os.path.join(tmp, f"{size}.onnx")
            export_model(path, arch=args.arch, size=size, verify=False)
            doc["loop"][size] = bench_loop(path, audio, read_samples, args.repeats)
    doc["vad"] = bench_vad(audio, args.repeats)

    if args.json:
        print(json.dumps(doc, indent=2))
        return
    print(f"{args.seconds:g} s of audio in {args.read_ms:g} ms reads, best of {args.repeats}")
    for size, r in doc["loop"].items():
        print(f"{args.arch} {size}: client loop {1000 * r['client_loop_s']:.1f} ms (RTF {r['rtf']:.4f}); "
              f"bare session.run {1000 * r['bare_session_run_s']:.1f} ms over {r['steps']} steps; "
              f"features offline {1000 * r['features_offline_s']:.1f} ms")
        print(f"  loop overhead (loop - features - session.run): {100 * r['overhead_share_of_loop']:.1f} % of the "
              f"loop (goal <= 10 %), {r['per_step_overhead_us']:.0f} us per step; loop / (features + "
              f"session.run) {r['ratio_vs_features_plus_session']:.2f}x; loop / session.run "
              f"{r['ratio_vs_bare_session']:.2f}x")
        print(f"  against a minimal hand-written client (features and session.run taking turns, nothing else): "
              f"{1000 * r['minimal_client_s']:.1f} ms; loop / minimal {r['ratio_vs_minimal_client']:.2f}x, "
              f"{r['per_step_over_minimal_us']:.0f} us per step")
    v = doc["vad"]
    if v is None:
        print("VAD: silero-vad/torch not installed, reference not measured")
    else:
        print(f"VAD over {v['windows']} windows: ours {v['ours_us_per_window']:.0f} us/window, Silero's wrapper "
              f"{v['silero_us_per_window']:.0f} us/window: ratio {v['ratio_ours_vs_silero']:.2f}x (goal <= 1.0x)")


if __name__ == "__main__":
    main()
