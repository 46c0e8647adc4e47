"""Per-step latency of an exported model in ONNX Runtime vs torch eager, measured in one run.

    python benchmarks/step_latency.py [--arch lstm-ctc] [--size default] [--seconds 60] [--json]

Reports, for the same step (nominal chunk, batch 1, one thread each):
- p50/p95 step latency of ONNX Runtime and of torch eager, and their ratio;
- the streaming-vs-offline time ratio: ONNX Runtime streaming 60 s in nominal chunks
  against one offline call over the same 60 s;
- the real-time factor of the streaming run.
A benchmark, not a test: it asserts nothing and its numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np


def percentiles_ms(samples_s: list) -> dict:
    a = np.asarray(samples_s) * 1000.0
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "mean": float(a.mean())}


def main() -> None:
    import torch

    from stateport.export import export_model
    from stateport.runtime.session import OnnxStepSession
    from stateport.verify.signals import synthetic_features

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="lstm-ctc")
    ap.add_argument("--size", default="default")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=3, help="best-of repeats for the whole-run timings")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        result = export_model(path, arch=args.arch, size=args.size, verify=False)
        card = result.card
        from stateport.export.sources import build_model

        model, _ = build_model(arch=args.arch, size=args.size)
        sess = OnnxStepSession(path, threads=1, allow_uncertified=True)  # exported without the proof: speed only
        size_bytes = os.path.getsize(path)

    hop_s = card.streaming.frame_hop_samples / card.streaming.sample_rate_hz
    chunk = card.streaming.frames_per_step
    frames = int(args.seconds / hop_s) // chunk * chunk
    x = synthetic_features(frames, card.inputs[0].shape[-1], seed=0)
    chunks = [x[:, a:a + chunk] for a in range(0, frames, chunk)]

    def run_onnx():
        state, times = sess.init_state(1), []
        for c in chunks:
            t0 = time.perf_counter()
            _, state = sess.run(c, state)
            times.append(time.perf_counter() - t0)
        return times

    def run_torch():
        state, times = model.init_state(1), []
        with torch.no_grad():
            for c in chunks:
                xt = torch.from_numpy(c)
                t0 = time.perf_counter()
                out = model.step(xt, *state)
                state = out[len(model.output_names):]
                times.append(time.perf_counter() - t0)
        return times

    def run_offline():
        t0 = time.perf_counter()
        sess.run(x)
        return time.perf_counter() - t0

    run_onnx(), run_torch(), run_offline()  # warm-up
    onnx_runs = [run_onnx() for _ in range(args.repeats)]
    torch_runs = [run_torch() for _ in range(args.repeats)]
    offline_s = min(run_offline() for _ in range(args.repeats))
    onnx_best = min(onnx_runs, key=sum)
    torch_best = min(torch_runs, key=sum)
    onnx_ms, torch_ms = percentiles_ms(onnx_best), percentiles_ms(torch_best)
    stream_s = sum(onnx_best)
    doc = {
        "machine": f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} cpus".strip(),
        "model": f"{args.arch} ({args.size})", "onnx_bytes": size_bytes, "chunk_frames": chunk,
        "audio_seconds": frames * hop_s, "steps": len(chunks),
        "onnx_step_ms": onnx_ms, "torch_step_ms": torch_ms,
        "onnx_vs_torch_p50_ratio": onnx_ms["p50"] / torch_ms["p50"],
        "streaming_s": stream_s, "offline_s": offline_s, "streaming_vs_offline_ratio": stream_s / offline_s,
        "streaming_rtf": stream_s / (frames * hop_s),
    }
    if args.json:
        print(json.dumps(doc, indent=2))
        return
    print(f"{doc['model']}: {len(chunks)} steps of {chunk} frames over {doc['audio_seconds']:.0f} s, 1 thread, "
          f"{size_bytes / 1e6:.2f} MB ONNX")
    print(f"  step latency  onnxruntime p50 {onnx_ms['p50']:.3f} ms  p95 {onnx_ms['p95']:.3f} ms")
    print(f"                torch eager p50 {torch_ms['p50']:.3f} ms  p95 {torch_ms['p95']:.3f} ms")
    print(f"  onnxruntime / torch (p50)          {doc['onnx_vs_torch_p50_ratio']:.2f}x")
    print(f"  streaming / offline (60 s total)   {doc['streaming_vs_offline_ratio']:.2f}x "
          f"({stream_s * 1000:.0f} ms vs {offline_s * 1000:.0f} ms)")
    print(f"  streaming real-time factor         {doc['streaming_rtf']:.4f}")


if __name__ == "__main__":
    main()
