"""``stateport stream``: run a model over an audio file (or the microphone) as a live client would."""

from __future__ import annotations

import math
import sys

from ..runtime.pacing import UNDERRUN_POLICIES
from .args import positive_float, positive_int


def add_parser(sub):
    p = sub.add_parser("stream", help="stream an audio file or the microphone through a model; print text live")
    p.add_argument("audio", nargs="?", help="audio file (WAV, FLAC, OGG, ...; any rate, any channels)")
    p.add_argument("--model", help="a stateport .onnx file (default: the built-in digit model)")
    p.add_argument("--realtime", action="store_true", help="feed the file at wall-clock speed (measures lag, underruns)")
    p.add_argument("--mic", action="store_true", help="read the microphone (needs sounddevice) instead of a file")
    p.add_argument("--seconds", type=positive_float, default=10.0, help="with --mic: how long to listen")
    p.add_argument("--vad", action="store_true", help="Silero VAD endpointing: reset state and finalize per utterance")
    p.add_argument("--min-silence-ms", type=positive_float, default=500.0,
                   help="with --vad: trailing silence that ends an utterance")
    p.add_argument("--decoder", default="greedy", choices=["greedy", "beam"])
    p.add_argument("--read-ms", type=positive_float, default=20.0, help="audio per read")
    p.add_argument("--threads", type=positive_int, default=1, help="ONNX Runtime intra-op threads")
    p.add_argument("--underrun-policy", default="drop_oldest", choices=list(UNDERRUN_POLICIES),
                   help="what to do when processing falls behind real time")
    p.add_argument("--fallback-model", help="model to switch to under --underrun-policy fallback (e.g. int8)")
    p.add_argument("--max-queue-ms", type=positive_float, default=1000.0, help="backlog that counts as an underrun")
    p.add_argument("--allow-uncertified", action="store_true",
                   help="run a model whose parity certificate is absent or FAILED (reported in the output)")
    return p


class _LivePrinter:
    """Partial text on one overwritten line on a TTY; plain lines otherwise."""

    def __init__(self, stream):
        self.stream = stream
        self.tty = stream.isatty()
        self._open_line = False

    def __call__(self, events):
        from ..runtime.events import FinalText, KeywordSpotted, PartialText

        for e in events:
            if isinstance(e, PartialText):
                if self.tty:
                    self.stream.write("\r\033[K" + e.text)
                    self._open_line = True
                else:
                    self.stream.write(f"partial: {e.text}\n")
            elif isinstance(e, FinalText):
                if self.tty:
                    self.stream.write("\r\033[K" + e.text + "\n")
                    self._open_line = False
                else:
                    self.stream.write(f"final: {e.text}\n")
            elif isinstance(e, KeywordSpotted):
                self.stream.write(("\r\033[K" if self.tty else "") + f"keyword: {e.keyword} ({e.score:.2f})\n")
        self.stream.flush()


class _MeteredSource:
    """A FileSource that reports each block it hands out to ``advance(seconds)`` (progress of a long file)."""

    def __init__(self, source, advance):
        self._source, self._advance = source, advance

    def __getattr__(self, name):
        return getattr(self._source, name)

    def poll(self, now):
        blocks = self._source.poll(now)
        self._advance(sum(b.shape[0] for b in blocks) / self._source.sample_rate_hz)
        return blocks


def _finite(value):
    return value if value is not None and math.isfinite(value) else None


def run(args):
    from ..assets import default_model_path
    from ..errors import InvalidInputError
    from ..runtime.endpoint import EndpointConfig
    from ..runtime.pacing import FileSource, MicrophoneSource, PacingOptions, run_paced
    from ..runtime.recognizer import Recognizer
    from ..runtime.streamer import Streamer, StreamerOptions

    if args.mic == bool(args.audio):
        raise InvalidInputError("give an audio file or --mic (exactly one)")
    # The audio file first: reading it is cheap and says at once what is wrong with it.
    source = None if args.mic else FileSource(args.audio, read_ms=args.read_ms, realtime=args.realtime)
    model = args.model or str(default_model_path())
    options = StreamerOptions(threads=args.threads)
    # The fallback is opened (and checked) now, not when the first underrun happens mid-stream.
    fallback = None if args.fallback_model is None else Recognizer.from_file(
        args.fallback_model, options=options, decoder=args.decoder, allow_uncertified=args.allow_uncertified)
    policy = PacingOptions(read_ms=args.read_ms, realtime=args.realtime or args.mic, max_queue_ms=args.max_queue_ms,
                           policy=args.underrun_policy, fallback_model=fallback)
    streamer = Streamer(model, vad="silero" if args.vad else None, decoder=args.decoder,
                        endpoint=EndpointConfig(min_silence_duration_ms=args.min_silence_ms),
                        options=options, allow_uncertified=args.allow_uncertified)
    trust = streamer.recognizer.trust
    if trust is not None and not trust.certified:
        print(f"warning: {model}: {trust.describe()}", file=sys.stderr)
    if args.mic:
        source = MicrophoneSource(sample_rate_hz=streamer.sample_rate_hz, read_ms=args.read_ms,
                                  duration_s=args.seconds)
    printer = None if args.json else _LivePrinter(sys.stdout)
    if args.mic or (printer is not None and printer.tty):  # live partials on a terminal are the progress
        report = run_paced(streamer, source, policy, on_events=printer)
    else:  # --json or a pipe: a bar (or one line) on stderr over the file's audio seconds
        from .. import progress

        with progress.meter(source.duration_s, desc=f"stream {args.audio}") as advance:
            report = run_paced(streamer, _MeteredSource(source, advance), policy, on_events=printer)
    result = streamer.result()
    summary = report.summary()
    doc = {
        "text": result.text,
        "tokens": list(result.tokens),
        "utterances": [{"text": u.text, "start_sample": u.start_sample, "end_sample": u.end_sample,
                        "reason": u.reason} for u in result.utterances],
        "rtf": _finite(report.rtf),
        "latency_ms": {k: summary["latency_ms"][k] for k in ("p50", "p95", "max")},
        "lag_ms": summary["lag_ms"] if report.lag_ms else None,
        "steps": summary["steps"],
        "underruns": report.underruns,
        "dropped_samples": report.dropped_samples,
        "model_switches": report.model_switches,
        "resets": streamer.counters.resets,
        "audio_seconds": report.audio_seconds,
        "sample_rate_hz": source.sample_rate_hz,
        "model_sample_rate_hz": streamer.sample_rate_hz,
        "model": str(model),
        "model_trust": trust.to_dict() if trust is not None else None,
        "tail_padding_ms": streamer.recognizer.tail_padding_ms,
        "realtime": bool(source.realtime),
    }
    if not args.json:
        lat = doc["latency_ms"]
        p50 = "-" if lat["p50"] is None else f"{lat['p50']:.2f}"
        p95 = "-" if lat["p95"] is None else f"{lat['p95']:.2f}"
        rtf = "-" if doc["rtf"] is None else f"{doc['rtf']:.3f}"
        print(f"text: {result.text}")
        print(f"audio {report.audio_seconds:.2f} s at {source.sample_rate_hz} Hz; RTF {rtf}; "
              f"latency per step p50 {p50} ms, p95 {p95} ms ({doc['steps']} steps)")
        print(f"underruns {report.underruns} (dropped {report.dropped_samples} samples, "
              f"{report.model_switches} model switches); resets {doc['resets']}")
    return 0, doc
