"""Speed of the built-in model against PocketSphinx on the same audio, in one run, one thread each.

    python benchmarks/peer_rtf.py [--model stateport/assets/digits/model.onnx] [--repeats 3]

Audio: the held-out speaker's trimmed recordings (100) and connected strings (butted, 30),
and held-out voices' connected strings (10 per engine at the default rate). Ours streams
20 ms reads through the client runtime (``Recognizer.transcribe``, one ONNX Runtime thread),
with the end-of-input flush its card declares; PocketSphinx (one thread, it has no others) decodes each recording whole.
Reported: seconds of compute per second of audio (RTF) for each, the best of ``--repeats``
passes, and the ratio measured in this run. The shared development machine makes absolute
RTFs vary; the ratio is the figure to compare.
"""

from __future__ import annotations

import argparse
import json
import time

from stateport.assets import default_model_path
from stateport.train import real_speech as rs


def _rtf(recogniser, sets) -> float:
    audio_s = elapsed = 0.0
    for s in sets:
        for wave, _ in s.items:
            t0 = time.perf_counter()
            recogniser.transcribe(wave, s.sample_rate_hz)
            elapsed += time.perf_counter() - t0
            audio_s += len(wave) / s.sample_rate_hz
    return elapsed / audio_s


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(default_model_path()))
    ap.add_argument("--tail-ms", type=float, default=None, help="override the card's end-of-input flush")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    voices = rs.held_out_voices()
    sets = [rs.trimmed_singles("george", indices=range(10)), rs.connected_composed("george", "butted", count=30)]
    sets += [rs.spoken_connected(engine, vs, "default rate", count=10) for engine, vs in voices.items()]
    ours = rs.RuntimeDigits(args.model, threads=1, tail_padding_ms=args.tail_ms)
    peer = rs.PeerDigits()
    best = {"ours": min(_rtf(ours, sets) for _ in range(args.repeats)),
            "pocketsphinx": min(_rtf(peer, sets) for _ in range(args.repeats))}
    result = {"model": args.model, "tail_padding_ms": ours.tail_padding_ms, "rtf": best,
              "pocketsphinx_over_ours": best["pocketsphinx"] / best["ours"],
              "audio_s": sum(len(w) / s.sample_rate_hz for s in sets for w, _ in s.items)}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
