"""Size and speed of the browser client next to the Python runtime, measured in one run on one machine.

    python benchmarks/browser_client.py            # needs `npm ci` in clients/web and /usr/bin/chromium
    python benchmarks/browser_client.py --json

Exports the built-in model with its frontend inside (``--audio-input``, proved over 10 s), writes
the page (``stateport export --web``), serves it, and plays the six shipped clips (1 s pauses
between them) into headless Chromium's fake microphone; the page's own numbers (performance.now):
model download, session creation, time to first partial, time per model call. Next to it, on the
same audio at 16 kHz, one thread each: the same client module in Node (onnxruntime-node), ONNX
Runtime in Python on the audio-in model (per call of the same size) and on the shipped features-in
model alone (per 16-frame step: the difference is the in-graph frontend's cost), and the Python
runtime's whole loop (Streamer) on both: kaldi-native-fbank + the features-in model, and the
audio-in model with no client frontend. A benchmark: it
asserts nothing; the machine's load is part of the numbers (say so when you quote them).
"""

from __future__ import annotations

import argparse
import functools
import glob
import gzip
import http.server
import json
import os
import subprocess
import tempfile
import threading
import time

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
ASSETS = os.path.join(REPO, "stateport", "assets", "digits")
CLIENT = os.path.join(REPO, "clients", "web")


def _gz(path: str) -> int:
    with open(path, "rb") as f:
        return len(gzip.compress(f.read(), 9))


def _summary(ms: list) -> dict:
    a = np.asarray(ms, dtype=np.float64)
    return {"calls": int(a.size), "mean_ms": round(float(a.mean()), 3), "p50_ms": round(float(np.median(a)), 3),
            "p95_ms": round(float(np.quantile(a, 0.95)), 3), "max_ms": round(float(a.max()), 3)}


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _browser(site: str, wav: str, seconds: float, chromium: str) -> dict:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=site))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        out = subprocess.run(["node", "drive-page.mjs", "--url", url, "--wav", wav, "--listen-seconds",
                              str(seconds), "--chromium", chromium], cwd=CLIENT, capture_output=True, text=True,
                             timeout=600, check=True).stdout
    finally:
        server.shutdown()
        server.server_close()
    return json.loads(out.strip().splitlines()[-1])


def _python_streamer(model: str, x: np.ndarray, rate: int, block: int) -> dict:
    """The Python runtime's whole loop (Streamer) on ``model``, fed ``block`` samples at a time."""
    from stateport.runtime.events import PartialText
    from stateport.runtime.streamer import Streamer

    streamer = Streamer(model)
    first = None
    t0 = time.perf_counter()
    for a in range(0, len(x), block):
        events = streamer.accept_waveform(x[a:a + block], rate)
        if first is None and any(isinstance(e, PartialText) for e in events):
            first = (a + block) / rate
    streamer.input_finished()
    total = time.perf_counter() - t0
    steps = streamer.counters.steps
    return {"text": streamer.result().text, "steps": steps, "ms_per_step_whole_loop": round(1000 * total / steps, 3),
            "rtf_whole_loop": round(total / (len(x) / rate), 5), "first_partial_audio_s": first}


def _python_audio_in(model: str, x: np.ndarray, chunk: int) -> dict:
    from stateport.runtime.session import OnnxStepSession

    session = OnnxStepSession(model)
    ms = []
    for a in range(0, len(x), chunk):
        t0 = time.perf_counter()
        session.step(x[None, a:a + chunk])
        ms.append(1000 * (time.perf_counter() - t0))
    return _summary(ms)


def _python_features_in(x: np.ndarray) -> dict:
    """The shipped features-in model alone, per 16-frame step, on kaldi-native-fbank features of the audio."""
    from stateport.runtime.frontend import FrontendConfig, compute_features
    from stateport.runtime.session import OnnxStepSession

    session = OnnxStepSession(os.path.join(ASSETS, "model.onnx"))
    feats = compute_features(x, FrontendConfig.from_dict(session.card.frontend))
    n = session.card.streaming.frames_per_step
    ms = []
    for a in range(0, len(feats) - len(feats) % n, n):
        t0 = time.perf_counter()
        session.step(feats[None, a:a + n])
        ms.append(1000 * (time.perf_counter() - t0))
    return _summary(ms)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chromium", default="/usr/bin/chromium")
    p.add_argument("--seconds", type=float, default=10.0, help="length of the export's parity proof")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    import soundfile as sf
    import torch

    torch.set_num_threads(1)
    from stateport.export import export_model
    from stateport.export.web import ORT_FILES, write_web_page

    with tempfile.TemporaryDirectory(prefix="stateport-web-bench-") as tmp:
        site = os.path.join(tmp, "site")
        model = os.path.join(site, "model.onnx")
        os.makedirs(site)
        export_model(model, arch="embedding-ctc", checkpoint=os.path.join(ASSETS, "checkpoint.pt"), audio_input=True,
                     seconds=args.seconds)
        write_web_page(site, model)
        clips = sorted(glob.glob(os.path.join(ASSETS, "clips", "*.wav")))
        pause = np.zeros(16000, np.float32)
        x = np.concatenate([pause] + [np.concatenate([sf.read(c, dtype="float32")[0], pause]) for c in clips])
        wav = os.path.join(tmp, "mic.wav")
        sf.write(wav, x, 16000, subtype="PCM_16")
        x = sf.read(wav, dtype="float32")[0]  # what the browser gets: 16-bit PCM
        audio_s = len(x) / 16000

        page = _browser(site, wav, audio_s + 1.0, args.chromium)
        calls = page["calls"]
        node = json.loads(subprocess.run(["node", "transcribe.mjs", model, wav, "--json"], cwd=CLIENT,
                                         capture_output=True, text=True, timeout=600, check=True).stdout)[0]
        chunk = int(np.median([c["samples"] for c in calls]))
        result = {
            "audio_seconds": round(audio_s, 2),
            "sizes_bytes": {
                "features_in_model": os.path.getsize(os.path.join(ASSETS, "model.onnx")),
                "audio_in_model": os.path.getsize(model),
                "audio_in_model_gzip": _gz(model),
                **{f"ort/{n}": os.path.getsize(os.path.join(site, "ort", n)) for n in ORT_FILES},
                **{f"ort/{n} gzip": _gz(os.path.join(site, "ort", n)) for n in ORT_FILES},
            },
            "browser": {
                "user_agent": page["userAgent"], "capture_rate_hz": page["contextRate"], "text": page["text"],
                "download_ms": round(page["downloadMs"], 1), "session_ms": round(page["sessionMs"], 1),
                "first_partial_ms_after_start": page["firstPartialMs"],
                "first_partial_audio_s": page["firstPartialAudioSeconds"],
                "per_call": _summary([c["ms"] for c in calls]), "samples_per_call": chunk,
                "rtf": round(sum(c["ms"] for c in calls) / 1000 / audio_s, 5),
            },
            "node_onnxruntime": {"text": node["text"], "calls": node["calls"], "mean_ms": round(node["ms_per_call"], 3)},
            "python_onnxruntime_audio_in": {**_python_audio_in(model, x, chunk), "samples_per_call": chunk},
            "python_onnxruntime_features_in_model_only": _python_features_in(x),
            "python_streamer_features_in": _python_streamer(os.path.join(ASSETS, "model.onnx"), x, 16000, 1024),
            "python_streamer_audio_in": _python_streamer(model, x, 16000, 1024),
        }
    b, pa = result["browser"]["per_call"], result["python_onnxruntime_audio_in"]
    result["ratios"] = {"browser_vs_python_audio_in_mean": round(b["mean_ms"] / pa["mean_ms"], 2),
                        "browser_vs_python_audio_in_p50": round(b["p50_ms"] / pa["p50_ms"], 2),
                        "node_vs_python_audio_in_mean": round(result["node_onnxruntime"]["mean_ms"] / pa["mean_ms"], 2)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
