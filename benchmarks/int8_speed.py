"""fp32 against every reduced-precision recipe: per-step latency and RTF through the client runtime and of
the model alone, on one thread, every ratio measured in one run.

    python benchmarks/int8_speed.py -o runs/int8_speed                 # built-in model and lstm-ctc default
    python benchmarks/int8_speed.py -o OUT --models builtin --table-dir runs/quant_table   # the table's files
    python benchmarks/int8_speed.py -o OUT --profile                    # + ONNX Runtime's per-op profile

Models: the built-in digit recogniser (exported from its checkpoint, or the files ``stateport quantize
--table`` wrote, ``--table-dir``) and ``lstm-ctc`` default (random weights: speed does not depend on them).
Each is exported (parity-proved) and quantized with every recipe (each proved); ``static-int8``
calibrates on the speech clips the package ships and ``qat-int8`` fine-tunes ``--qat-recipe``
steps of the digit task (the graph, hence the speed, does not depend on how long it trained).

Audio: the shipped speech clips (FSDD george, CC BY-SA 4.0) looped to ``--seconds``. Per model:

- runtime: one :class:`stateport.Recognizer` stream fed 20 ms reads; every ``decode_stream`` (features
  of the chunk, session, decoder) timed: p50/p95 step latency; RTF = wall time of the whole loop /
  audio time;
- model: bare ``session.run`` (ONNX Runtime's own) on the chunks of features the runtime computes for
  the same audio, the state fed back by hand: p50/p95 per step, RTF.

Every repeat runs every model in turn (a busy spell on a shared machine hits them alike); per model
the repeat with the least total time is reported, and ratios are against fp32's. ``--profile`` adds
ONNX Runtime's per-op profile (``SessionOptions.enable_profiling``) of the bare session: kernel ms per
step by op type, which shows where each recipe spends its step. The load average is printed with
the figures. A benchmark: it asserts nothing.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import platform
import time

import numpy as np

RECIPES = ("fp16", "dynamic-int8", "static-int8", "qat-int8")
READ_MS = 20.0


def cpu_flags() -> dict:
    """The CPU's model name and the SIMD features ONNX Runtime's int8 kernels (MLAS) dispatch on."""
    flags, name = set(), platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
                elif line.startswith("model name") and name in ("", platform.machine(), platform.processor()):
                    name = line.split(":", 1)[1].strip()
    except OSError:
        pass
    wanted = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
    return {"model": name, "machine": platform.machine(), "int8_features": [f for f in wanted if f in flags]}


def shipped_audio(seconds: float) -> np.ndarray:
    """The package's speech clips (16 kHz) end to end, looped to ``seconds``."""
    from stateport.assets import builtin_dir
    from stateport.runtime.audio import prepare_samples, read_audio_file

    clips = [prepare_samples(read_audio_file(p)[0]) for p in sorted(glob.glob(str(builtin_dir() / "clips" / "*.wav")))]
    reps = int(np.ceil(seconds * 16000 / sum(len(c) for c in clips)))
    return np.concatenate(clips * reps)[: int(seconds * 16000)]


def build_artifacts(name: str, out_dir: str, recipes, qat_recipe: str, log) -> dict:
    """fp32 and every recipe's file for model ``name`` ("builtin" or "lstm-ctc"), written into ``out_dir``."""
    import logging

    from stateport.assets import builtin_dir
    from stateport.export import export_model
    from stateport.quantize import get_recipe, quantize_model
    from stateport.quantize.calibration import shipped_speech
    from stateport.train.quantize_data import DigitQatTask

    logging.getLogger().setLevel(logging.ERROR)  # ONNX Runtime's quantizer advises on the root logger
    os.makedirs(out_dir, exist_ok=True)
    fp32 = os.path.join(out_dir, "fp32.onnx")
    checkpoint = str(builtin_dir() / "checkpoint.pt") if name == "builtin" else None
    if name == "builtin":
        import torch

        arch = torch.load(checkpoint, map_location="cpu", weights_only=True)["architecture"]
        card = export_model(fp32, arch=arch, checkpoint=checkpoint, seconds=10).card
    else:
        card = export_model(fp32, arch=name, size="default", seconds=10).card
    files = {"fp32": fp32}
    for recipe in recipes:
        cfg = get_recipe(qat_recipe if recipe == "qat-int8" else recipe)
        path = os.path.join(out_dir, f"{recipe}.onnx")
        qat = DigitQatTask.for_card(card, checkpoint=checkpoint, recipe=cfg.name) if recipe == "qat-int8" else None
        log(f"  {name}: {cfg.name} ...")
        quantize_model(fp32, path, recipe=cfg, calib=shipped_speech(), qat=qat, checkpoint=checkpoint, seconds=10,
                       log=lambda *_: None)
        files[recipe] = path
    return files


def table_artifacts(table_dir: str, recipes) -> dict:
    files = {"fp32": os.path.join(table_dir, "fp32.onnx")}
    files.update({r: os.path.join(table_dir, f"{r}.onnx") for r in recipes
                  if os.path.isfile(os.path.join(table_dir, f"{r}.onnx"))})
    return files


class Bench:
    """One model file: its Recognizer, its bare ONNX Runtime session and the chunks of the audio."""

    def __init__(self, path: str, audio: np.ndarray):
        from stateport.runtime.frontend import FrontendConfig, compute_features
        from stateport.runtime.recognizer import Recognizer

        self.path, self.audio = path, audio
        self.rec = Recognizer.from_file(path, threads=1)
        card = self.rec.card
        self.card = card
        # The frames the runtime feeds: the audio, then the card's end-of-input flush of silence.
        heard = np.concatenate([audio, np.zeros(int(round(self.rec.tail_padding_ms * 16)), np.float32)])
        feats = compute_features(heard, FrontendConfig.from_dict(card.frontend))
        n = card.streaming.frames_per_step
        self.chunks = [np.ascontiguousarray(feats[None, a:a + n]) for a in range(0, len(feats) - n + 1, n)]
        self.ort = self.rec.session.session
        self.names = card.output_names
        self.states = [s.name for s in card.states]
        self.n_out = len(card.outputs)

    def runtime(self, read_samples: int) -> tuple[float, list]:
        rec, steps = self.rec, []
        t0 = time.perf_counter()
        stream = rec.create_stream()
        for a in range(0, len(self.audio), read_samples):
            stream.accept_waveform(16000, self.audio[a:a + read_samples])
            while rec.is_ready(stream):
                t = time.perf_counter()
                rec.decode_stream(stream)
                steps.append(time.perf_counter() - t)
        stream.input_finished()
        while rec.is_ready(stream):
            t = time.perf_counter()
            rec.decode_stream(stream)
            steps.append(time.perf_counter() - t)
        return time.perf_counter() - t0, steps

    def bare(self) -> tuple[float, list]:
        feeds, steps = dict(self.rec.session.init_state(1)), []
        name = self.card.inputs[0].name
        t0 = time.perf_counter()
        for x in self.chunks:
            t = time.perf_counter()
            feeds[name] = x
            values = self.ort.run(self.names, feeds)
            feeds.update(zip(self.states, values[self.n_out:]))
            steps.append(time.perf_counter() - t)
        return time.perf_counter() - t0, steps


def profile(path: str, chunks: list, card) -> dict:
    """ONNX Runtime's per-op profile of the bare session over ``chunks``: kernel ms per step by op type."""
    from stateport.runtime.session import certified_optimization, make_ort_session

    sess = make_ort_session(path, threads=1, optimization=certified_optimization(card),
                            profile_prefix=os.path.join(os.path.dirname(os.path.abspath(path)), "ort_profile"))
    feeds = {s.name: np.full(s.concrete_shape(1), s.init, dtype=np.dtype(s.dtype)) for s in card.states}
    names, states = card.output_names, [s.name for s in card.states]
    for x in chunks:
        feeds[card.inputs[0].name] = x
        values = sess.run(names, feeds)
        feeds.update(zip(states, values[len(card.outputs):]))
    trace = sess.end_profiling()
    with open(trace) as f:
        events = json.load(f)
    os.remove(trace)
    by_op, nodes = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by_op[e["args"]["op_name"]] += e["dur"]
            nodes[e["args"]["op_name"]] += 1
    steps = len(chunks)
    total = sum(by_op.values())
    return {"kernel_ms_per_step": total / steps / 1000.0,
            "ops": [{"op": op, "ms_per_step": us / steps / 1000.0, "share": us / total,
                     "nodes": nodes[op] // steps} for op, us in by_op.most_common()]}


def percentiles(samples: list) -> dict:
    a = 1000.0 * np.asarray(samples)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "mean": float(a.mean())}


def measure(files: dict, audio: np.ndarray, repeats: int, do_profile: bool) -> dict:
    benches = {k: Bench(p, audio) for k, p in files.items()}
    read = int(16000 * READ_MS / 1000)
    for b in benches.values():  # warm-up: first runs allocate
        b.runtime(read)
        b.bare()
    best: dict = {k: {"runtime": None, "model": None} for k in benches}
    for _ in range(repeats):
        for k, b in benches.items():
            for mode, fn in (("runtime", lambda: b.runtime(read)), ("model", b.bare)):
                wall, steps = fn()
                if best[k][mode] is None or wall < best[k][mode][0]:
                    best[k][mode] = (wall, steps)
    seconds = len(audio) / 16000
    rows = {}
    for k, b in benches.items():
        row = {"path": b.path, "bytes": os.path.getsize(b.path), "steps": len(best[k]["model"][1])}
        for mode in ("runtime", "model"):
            wall, steps = best[k][mode]
            row[mode] = {"rtf": wall / seconds, "step_ms": percentiles(steps)}
        if do_profile:
            row["profile"] = profile(b.path, b.chunks, b.card)
        rows[k] = row
    base = rows["fp32"]
    for row in rows.values():
        row["size_ratio"] = row["bytes"] / base["bytes"]
        for mode in ("runtime", "model"):
            row[mode]["speedup_rtf"] = base[mode]["rtf"] / row[mode]["rtf"]
            row[mode]["speedup_p50"] = base[mode]["step_ms"]["p50"] / row[mode]["step_ms"]["p50"]
    return rows


def render(name: str, rows: dict) -> str:
    head = (f"{'':<14}{'size %':>7}  {'runtime: p50 ms':>15}{'p95 ms':>8}{'RTF':>8}{'speed-up':>9}"
            f"  {'model: p50 ms':>13}{'p95 ms':>8}{'RTF':>8}{'speed-up':>9}")
    lines = [f"{name}", head]
    for k, r in rows.items():
        rt, m = r["runtime"], r["model"]
        lines.append(f"{k:<14}{100 * r['size_ratio']:>7.1f}  {rt['step_ms']['p50']:>15.3f}{rt['step_ms']['p95']:>8.3f}"
                     f"{rt['rtf']:>8.4f}{rt['speedup_rtf']:>8.2f}x  {m['step_ms']['p50']:>13.3f}"
                     f"{m['step_ms']['p95']:>8.3f}{m['rtf']:>8.4f}{m['speedup_rtf']:>8.2f}x")
    for k, r in rows.items():
        if "profile" in r:
            p = r["profile"]
            top = ", ".join(f"{o['op']} {o['ms_per_step']:.3f} ({100 * o['share']:.0f} %)" for o in p["ops"][:6])
            lines.append(f"  profile {k}: {p['kernel_ms_per_step']:.3f} ms of kernels per step: {top}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", required=True, help="folder for the built files and int8_speed.json")
    ap.add_argument("--models", nargs="+", default=["builtin", "lstm-ctc"], choices=["builtin", "lstm-ctc"])
    ap.add_argument("--table-dir", help="use the built-in model's files from `stateport quantize --table` here")
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    ap.add_argument("--qat-recipe", default="qat-int8-smoke", help="QAT preset the files are built with")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--profile", action="store_true", help="add ONNX Runtime's per-op profile of every file")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    log = (lambda *_: None) if args.json else print
    audio = shipped_audio(args.seconds)
    doc = {"cpu": cpu_flags(), "threads": 1, "audio_seconds": args.seconds, "read_ms": READ_MS,
           "repeats": args.repeats, "load_average_before": os.getloadavg(), "models": {}}
    import onnxruntime

    doc["onnxruntime"] = onnxruntime.__version__
    for name in args.models:
        if name == "builtin" and args.table_dir:
            files = table_artifacts(args.table_dir, args.recipes)
        else:
            log(f"building {name} artifacts in {os.path.join(args.out, name)}")
            files = build_artifacts(name, os.path.join(args.out, name), args.recipes, args.qat_recipe, log)
        doc["models"][name] = measure(files, audio, args.repeats, args.profile)
    doc["load_average_after"] = os.getloadavg()
    from stateport.atomic import atomic_write_text

    os.makedirs(args.out, exist_ok=True)
    atomic_write_text(os.path.join(args.out, "int8_speed.json"), json.dumps(doc, indent=2))
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    print(f"{doc['cpu']['model']} ({', '.join(doc['cpu']['int8_features'])}), onnxruntime {doc['onnxruntime']}, "
          f"1 thread, {args.seconds:g} s of speech, best of {args.repeats}; load average "
          f"{doc['load_average_before'][0]:.2f} before, {doc['load_average_after'][0]:.2f} after")
    for name, rows in doc["models"].items():
        print(render(name, rows))


if __name__ == "__main__":
    main()
