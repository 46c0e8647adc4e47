"""The main job, end to end on the built-in model: ``stateport demo``.

export with explicit state -> prove parity -> quantize to int8 -> stream the demo clips
through the client loop (partial text live) -> one table and a JSON report.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .assets import MissingAssetError, builtin_dir, calibration_dir
from .atomic import atomic_write_text, check_output_path
from .errors import OutputPathError

READ_SAMPLES = 320  # 20 ms reads at 16 kHz, as a microphone callback delivers them
# The int8 recipe the demo shows: the best of the built-in model's recipes on size, speed and accuracy
# (docs/quantization.md, measured in one run): static-int8 runs every convolution on ONNX Runtime's
# int8 kernels at 30 % of fp32's size, the fastest step of all, with fp32's WER on every set; dynamic-int8
# computes the convolutions in float (no faster than fp32), and qat-int8 needs the training corpus.
DEMO_RECIPE = "static-int8"
SPEED_PASSES = 3  # the demo clips are short: the best of a few passes is the RTF


@dataclass
class ArtifactRow:
    artifact: str
    path: str
    size_bytes: int
    parity_max_abs_diff: float | None
    parity_note: str
    rtf: float = float("nan")
    latency_ms: dict = field(default_factory=dict)
    wer: float = float("nan")
    speedup: float = float("nan")  # fp32's RTF / this RTF, measured in the same run
    transcripts: list = field(default_factory=list)


def demo_clips() -> list[tuple[str, str]]:
    """(wav path, reference text) of the shipped demo clips."""
    folder = builtin_dir() / "clips"
    index = folder / "transcripts.json"
    if not index.is_file():
        raise MissingAssetError(f"the demo clips are missing ({index}); reinstall stateport")
    entries = json.loads(index.read_text())
    return [(str(folder / e["file"]), e["text"]) for e in entries]


def stream_clip(streamer, path: str, *, live=None) -> tuple[str, list, float, float]:
    """Stream one WAV in 20 ms reads with the low-level API; (text, step latencies ms, busy s, audio s)."""
    from .runtime.audio import read_audio_file
    from .runtime.events import PartialText

    samples, rate = read_audio_file(path)
    streamer.reset()
    latencies, busy = [], 0.0
    read = max(int(rate * READ_SAMPLES / 16000), 1)
    for a in range(0, samples.shape[0], read):
        t0 = time.perf_counter()
        streamer.accept_waveform(samples[a:a + read], rate, decode=False)
        busy += time.perf_counter() - t0
        while streamer.is_ready():
            t0 = time.perf_counter()
            events = streamer.decode_step()
            dt = time.perf_counter() - t0
            busy += dt
            latencies.append(1000.0 * dt)
            if live:
                for e in events:
                    if isinstance(e, PartialText):
                        live(e.text)
    t0 = time.perf_counter()
    streamer.input_finished(decode=False)
    while streamer.is_ready():
        streamer.decode_step()
    busy += time.perf_counter() - t0
    return streamer.result().text, latencies, busy, samples.shape[0] / rate


def _wer(refs: list, hyps: list) -> float:
    from .train.metrics import word_error_rate

    return word_error_rate([r.split() for r in refs], [h.split() for h in hyps])


def run_demo(out_dir: str | os.PathLike = "stateport-demo", *, quantize: bool = True, seconds: float = 60.0,
             live: bool = True, log=print) -> dict:
    """Run the whole job; returns the report (also written to ``out_dir/report.json``).

    ``log`` receives one line per step (the CLI prints them, or sends them to stderr with --json);
    :func:`render_table` of ``report["artifacts"]`` is the summary table.
    """
    from .export import export_model
    from .runtime.streamer import Streamer

    # A folder the demo fills (a previous demo's is reused): refused before any work if it cannot be.
    out = Path(check_output_path(out_dir, directory=True, replaceable=lambda _: True))
    out.mkdir(exist_ok=True)
    if not os.access(out, os.W_OK | os.X_OK):
        raise OutputPathError(f"cannot write into {os.fspath(out)!r}: the folder is not writable")
    checkpoint = builtin_dir() / "checkpoint.pt"
    if not checkpoint.is_file():
        raise MissingAssetError(f"the built-in checkpoint is missing ({checkpoint}); reinstall stateport")
    t_start = time.perf_counter()

    log(f"1. export the built-in model with explicit state ports -> {out / 'digits.onnx'}")
    import torch

    arch = torch.load(checkpoint, map_location="cpu", weights_only=True)["architecture"]
    fp32 = export_model(out / "digits.onnx", arch=arch, checkpoint=str(checkpoint), seconds=seconds)
    card = fp32.card
    log(f"   ports: {', '.join(card.input_names)} -> {', '.join(card.output_names)}")
    outputs = [p.name for p in card.outputs]
    logits_diff = fp32.report.max_abs_diff_of(outputs)
    log(f"2. parity proof: {len(fp32.report.checks)} checks over {fp32.report.seconds:g} s: logits max |diff| "
        f"{logits_diff:.2e}, every output and state within {fp32.report.tolerance:g} x max(1, |value|) "
        f"(worst {fp32.report.max_scaled_diff:.1e}) -> {'PASS' if fp32.report.passed else 'FAIL'}")
    rows = [ArtifactRow("fp32", str(fp32.path), os.path.getsize(fp32.path), logits_diff,
                        "logits: streaming vs offline vs torch")]

    if quantize:
        try:
            from .quantize.api import quantize_model
        except ImportError as e:  # the quantize extra (torchao) is optional
            log(f"3. int8: skipped ({e}); install stateport[quantize]")
        else:
            import logging

            root = logging.getLogger()
            previous = root.level
            root.setLevel(logging.ERROR)  # ONNX Runtime's quantizer logs advice on the root logger
            try:
                # The shipped calibration set (training speakers only), never ../shared: the demo
                # must run on a machine that has nothing but the package.
                q = quantize_model(fp32.path, out / "digits.int8.onnx", recipe=DEMO_RECIPE,
                                   calib=calibration_dir(), checkpoint=checkpoint)
            finally:
                root.setLevel(previous)
            diffs = [r.max_abs_diff_of(outputs) for r in q.reports.values()]
            diffs = [d for d in diffs if d is not None]
            diff = max(diffs) if diffs else None
            log(f"3. int8 ({DEMO_RECIPE}): {os.path.getsize(q.path) / 1e6:.2f} MB "
                f"({100 * q.sizes['ratio']:.0f} % of fp32); int8 streaming vs int8 offline logits max |diff| "
                f"{diff:.2e} (recipe bound {q.card.provenance.quantization['config']['stream_tolerance']:g})")
            rows.append(ArtifactRow(f"int8 ({DEMO_RECIPE.removesuffix('-int8')})", str(q.path),
                                    os.path.getsize(q.path), diff, "logits: int8 streaming vs int8 offline"))
    else:
        log("3. int8: skipped (--no-quantize)")

    clips = demo_clips()
    log(f"4. stream {len(clips)} demo clips through the client loop (20 ms reads), every model in turn, "
        f"{SPEED_PASSES} passes")
    for n in range(SPEED_PASSES):  # passes interleave the models: a busy spell on the machine hits them alike
        for row in rows:
            streamer = Streamer(row.path)
            refs, hyps, lat, busy, audio = [], [], [], 0.0, 0.0
            for path, ref in clips:
                printer = _LiveLine(f"   [{row.artifact}] ") if (live and n == 0 and row is rows[0]) else None
                text, l, b, a = stream_clip(streamer, path, live=printer)
                if printer:
                    printer.done(text, ref)
                refs.append(ref)
                hyps.append(text)
                lat += l
                busy += b
                audio += a
            if n == 0 or busy / audio < row.rtf:  # the pass with the least busy time is the speed
                row.rtf = busy / audio
                row.latency_ms = {"p50": float(np.percentile(lat, 50)), "p95": float(np.percentile(lat, 95))}
            if n == 0:
                row.wer = _wer(refs, hyps)
                row.transcripts = [{"clip": os.path.basename(p), "reference": r, "hypothesis": h}
                                   for (p, r), h in zip(clips, hyps)]
    for row in rows:
        row.speedup = rows[0].rtf / row.rtf

    report = {"elapsed_s": round(time.perf_counter() - t_start, 2), "out_dir": str(out),
              "model": {"architecture": card.provenance.architecture, "parameters": card.provenance.parameters,
                        "checkpoint_sha256": card.provenance.checkpoint_sha256,
                        "state_ports": [s.name for s in card.states]},
              "metrics_shipped": _shipped_metrics(),
              "artifacts": [row.__dict__ for row in rows]}
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    return report


def _shipped_metrics() -> dict | None:
    path = builtin_dir() / "metrics.json"
    return json.loads(path.read_text()) if path.is_file() else None


def render_table(rows: list) -> str:
    """The demo's summary: one line per artifact (ArtifactRow, or its dict from the report)."""
    rows = [ArtifactRow(**r) if isinstance(r, dict) else r for r in rows]
    head = (f"{'artifact':<16} {'size':>9} {'parity max|diff|':>17} {'RTF':>8} {'speed-up':>9} {'latency p50':>12} "
            f"{'p95':>8} {'WER (demo clips)':>17}")
    lines = [head, "-" * len(head)]
    for r in rows:
        mad = "-" if r.parity_max_abs_diff is None else f"{r.parity_max_abs_diff:.2e}"
        lines.append(f"{r.artifact:<16} {r.size_bytes / 1e6:>7.2f}MB {mad:>17} {r.rtf:>8.4f} {r.speedup:>8.2f}x "
                     f"{r.latency_ms.get('p50', float('nan')):>10.3f}ms {r.latency_ms.get('p95', float('nan')):>6.3f}ms "
                     f"{100 * r.wer:>16.1f}%")
    return "\n".join(lines)


class _LiveLine:
    """Partial text on one line: rewritten in place on a terminal, printed once otherwise."""

    def __init__(self, prefix: str):
        self.prefix, self.tty, self.last = prefix, sys.stdout.isatty(), ""

    def __call__(self, text: str):
        self.last = text
        if self.tty:
            sys.stdout.write("\r\033[K" + self.prefix + text)
            sys.stdout.flush()

    def done(self, text: str, ref: str):
        mark = "ok " if text == ref else "ERR"
        line = f"{self.prefix}{text:<40} ({mark} ref: {ref})"
        sys.stdout.write(("\r\033[K" if self.tty else "") + line + "\n")
        sys.stdout.flush()
