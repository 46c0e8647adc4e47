"""Many streams on one model: ``decode_streams`` (batched) against the same streams decoded one at a time.

    python benchmarks/batched_throughput.py [--streams 1 4 16 32 64] [--seconds 8] [--repeats 3]
                                            [--models lstm-ctc builtin] [--precisions fp32 int8] [--json]

For each model (lstm-ctc default with random weights; the built-in digit model) and precision
(fp32; int8 from ``stateport quantize --recipe static-int8``, calibrated on the speech the package
ships), one ONNX Runtime thread, and N streams of ``--seconds`` of different speech each (FSDD
digits with pauses when ../shared/data/fsdd is there, else noise):

- one at a time: every stream is created, given its audio, finished and decoded with
  ``decode_stream`` until it is done, one after the other;
- batched: the same streams, decoded with ``decode_streams(all)`` until none is ready (one
  ``session.run`` per step for all of them).

Both time everything a server does (create_stream, accept_waveform, the features, the model,
decoding, the end-of-input flush) and report audio seconds decoded per wall second; on one
thread that is also how many streams one core keeps in real time. The two modes are checked to
give the same tokens. Then the cost of ``create_stream()`` and of a new stream's first audio
(kaldi-native-fbank builds its extractor then). Timings are the best of ``--repeats``, the two
modes taking turns. A benchmark, not a test: its numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from client_loop import test_audio  # noqa: E402  (same audio as the loop benchmark)


def make_models(work: str, names: list, precisions: list) -> dict:
    """{(model, precision): path}: lstm-ctc default exported here, the built-in model as shipped, int8 of both."""
    from stateport.assets import builtin_dir, default_model_path

    paths = {}
    if "lstm-ctc" in names:
        from stateport.export import export_model

        paths[("lstm-ctc", "fp32")] = os.path.join(work, "lstm-ctc-default.onnx")
        export_model(paths[("lstm-ctc", "fp32")], arch="lstm-ctc", size="default", verify=False)
    if "builtin" in names:
        paths[("builtin", "fp32")] = str(default_model_path())
    if "int8" in precisions:
        import logging

        from stateport.quantize import quantize_model
        from stateport.quantize.calibration import shipped_speech

        logging.getLogger().setLevel(logging.ERROR)  # ONNX Runtime's quantizer advises on the root logger
        for name in names:
            out = os.path.join(work, f"{name}.int8.onnx")
            checkpoint = str(builtin_dir() / "checkpoint.pt") if name == "builtin" else None
            try:
                quantize_model(paths[(name, "fp32")], out, recipe="static-int8", checkpoint=checkpoint,
                               calib=shipped_speech(), log=lambda *_: None)
            except Exception as e:  # a failed proof still leaves a file to time; say so
                print(f"note: quantizing {name}: {type(e).__name__}: {str(e).splitlines()[0][:200]}", file=sys.stderr)
            if os.path.exists(out):
                paths[(name, "int8")] = out
    return {k: v for k, v in paths.items() if k[1] in precisions}


def run_alone(rec, audios: list) -> tuple[float, list]:
    t0 = time.perf_counter()
    results = []
    for audio in audios:
        s = rec.create_stream()
        s.accept_waveform(16000, audio)
        s.input_finished()
        while rec.is_ready(s):
            rec.decode_stream(s)
        results.append(rec.get_result(s).tokens)
    return time.perf_counter() - t0, results


def run_batched(rec, audios: list) -> tuple[float, list]:
    t0 = time.perf_counter()
    streams = [rec.create_stream() for _ in audios]
    for s, audio in zip(streams, audios):
        s.accept_waveform(16000, audio)
        s.input_finished()
    live = streams
    while live:
        rec.decode_streams(live)
        live = [s for s in live if rec.is_ready(s)]
    return time.perf_counter() - t0, [rec.get_result(s).tokens for s in streams]


def bench_model(path: str, counts: list, seconds: float, repeats: int) -> dict:
    from stateport.runtime.recognizer import Recognizer

    rec = Recognizer.from_file(path, threads=1, allow_uncertified=True)  # random weights / int8: speed only
    pool = test_audio(seconds * max(counts) + 1.0)
    rows = {}
    for n in counts:
        size = int(seconds * 16000)
        audios = [pool[(k * 7919 * 16) % (pool.shape[0] - size):][:size] for k in range(n)]  # different speech each
        best_alone = best_batched = float("inf")
        for _ in range(repeats):
            t, alone = run_alone(rec, audios)
            best_alone = min(best_alone, t)
            t, batched = run_batched(rec, audios)
            best_batched = min(best_batched, t)
        if alone != batched:
            raise SystemExit(f"{path}: batched tokens differ from one-at-a-time tokens at {n} streams")
        audio_s = n * seconds
        rows[n] = {"one_at_a_time_audio_s_per_s": audio_s / best_alone, "batched_audio_s_per_s": audio_s / best_batched,
                   "speedup": best_alone / best_batched, "tokens": sum(len(t) for t in batched)}
    return rows


def bench_ceiling(path: str, n: int, repeats: int) -> dict:
    """What batching can gain at ``n`` streams: the model alone (ONNX Runtime at batch 1 vs batch n, one
    step of random features) and the features, which stay per stream (one kaldi-native-fbank extractor
    each). Ceiling = (features + model at batch 1) / (features + model at batch n / n), per stream-step."""
    from stateport.runtime.frontend import FrontendConfig, compute_features
    from stateport.runtime.recognizer import Recognizer

    rec = Recognizer.from_file(path, threads=1, allow_uncertified=True)
    card, session = rec.card, rec.session
    port = card.inputs[0]
    frames = card.streaming.frames_per_step
    rng = np.random.default_rng(0)

    def model_step_s(batch: int) -> float:
        feeds = dict(session.init_state(batch))
        feeds[port.name] = rng.standard_normal((batch, frames, rec.num_features)).astype(np.float32)
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(10):
                session.run_prepared(feeds)
            best = min(best, (time.perf_counter() - t0) / 10)
        return best

    one, many = model_step_s(1), model_step_s(n)
    config = FrontendConfig.from_dict(card.frontend)
    audio = test_audio(8.0)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        feats = compute_features(audio, config)
        best = min(best, time.perf_counter() - t0)
    features_step = best * frames / feats.shape[0]
    return {"streams": n, "model_step_ms_batch_1": 1e3 * one, f"model_step_ms_per_stream_batch_{n}": 1e3 * many / n,
            "model_alone_speedup": n * one / many, "features_step_ms_per_stream": 1e3 * features_step,
            "ceiling_speedup": (features_step + one) / (features_step + many / n)}


def bench_stream_setup(path: str) -> dict:
    from stateport.runtime.recognizer import Recognizer

    rec = Recognizer.from_file(path, allow_uncertified=True)
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        rec.create_stream()
    create_us = 1e6 * (time.perf_counter() - t0) / n
    read = np.zeros(320, np.float32)
    streams = [rec.create_stream() for _ in range(2000)]
    t0 = time.perf_counter()
    for s in streams:
        s.accept_waveform(16000, read)
        rec.is_ready(s)
    first_read_us = 1e6 * (time.perf_counter() - t0) / len(streams)
    t0 = time.perf_counter()
    for s in streams:
        s.accept_waveform(16000, read)
        rec.is_ready(s)
    later_read_us = 1e6 * (time.perf_counter() - t0) / len(streams)
    return {"create_stream_us": create_us, "first_read_us": first_read_us, "later_read_us": later_read_us}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 4, 16, 32, 64])
    ap.add_argument("--seconds", type=float, default=8.0, help="audio per stream")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=["lstm-ctc", "builtin"], choices=["lstm-ctc", "builtin"])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "int8"], choices=["fp32", "int8"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    doc = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "threads": 1,
           "seconds_per_stream": args.seconds, "repeats": args.repeats, "models": {}}
    with tempfile.TemporaryDirectory() as work:
        paths = make_models(work, args.models, args.precisions)
        for (name, precision), path in paths.items():
            doc["models"][f"{name} {precision}"] = {"curve": bench_model(path, args.streams, args.seconds, args.repeats),
                                                    "ceiling": bench_ceiling(path, 32, args.repeats)}
        first = next(iter(paths.values()))
        doc["stream_setup"] = {name: bench_stream_setup(path) for (name, precision), path in paths.items()
                               if precision == "fp32"} or {"model": bench_stream_setup(first)}
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    print(f"{args.seconds:g} s of speech per stream, 1 ONNX Runtime thread, best of {args.repeats}; "
          "throughput in audio seconds per wall second (= streams one core keeps in real time)")
    for model, entry in doc["models"].items():
        print(f"\n{model}")
        print(f"  {'streams':>7} {'one at a time':>14} {'decode_streams':>15} {'speedup':>8}")
        for n, r in entry["curve"].items():
            print(f"  {n:>7} {r['one_at_a_time_audio_s_per_s']:>14.1f} {r['batched_audio_s_per_s']:>15.1f} "
                  f"{r['speedup']:>7.2f}x")
        c = entry["ceiling"]
        print(f"  what batching can gain at 32 streams: the model alone {c['model_alone_speedup']:.2f}x "
              f"({c['model_step_ms_batch_1']:.2f} ms per step at batch 1, "
              f"{c['model_step_ms_per_stream_batch_32']:.2f} ms per stream at batch 32); features "
              f"{c['features_step_ms_per_stream']:.2f} ms per stream-step, not batched: ceiling "
              f"{c['ceiling_speedup']:.2f}x")
    for name, s in doc["stream_setup"].items():
        print(f"\n{name}: create_stream() {s['create_stream_us']:.1f} us; a new stream's first 20 ms read "
              f"{s['first_read_us']:.0f} us (the feature extractor is built then), later reads {s['later_read_us']:.1f} us")


if __name__ == "__main__":
    main()
