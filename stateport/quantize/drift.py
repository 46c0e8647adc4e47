"""Long-session drift soak: does reduced precision drift away from fp32 over a long stream?

A streaming model's error can accumulate in its state: after 30 minutes a quantized LSTM's
``h``/``c`` may sit far from where the fp32 model's are, even if each single step is close. This
soak streams >= 30 minutes of real speech and silence (the caller's :class:`SoakAudio`; the
digit recogniser's is ``stateport.train.quantize_data.fsdd_soak_audio``) through the fp32 model
and each reduced-precision model side by side, in lock step, in two modes:

- ``no-reset``: one state carried through the whole session;
- ``reset``: at every end of speech found by a VAD (an energy VAD by default, Silero optional)
  each state whose card flag ``reset_on_end_of_speech`` is true is cleared, in both models,
  before the next step, as a client does.

Measured per state port: max |state_q - state_fp32| per ``divergence_window_s`` window (10 s),
and streaming WER per ``wer_window_s`` window (5 minutes). With reset, a state never carries
more than one reset interval of history, so its divergence is bounded by what one interval can
build up; the report gives the longest interval and the peak divergence in each mode.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import InvalidInputError
from ..runtime.decoders import ctc_collapse
from ..spec import ModelCard

NOISE_FLOOR_DBFS = -65.0


@dataclass(frozen=True)
class EnergyVadConfig:
    """Frame energy VAD: speech where the 10 ms frame RMS is above ``threshold_dbfs``.

    End of speech: ``min_silence_ms`` of non-speech after at least ``min_speech_ms`` of speech.
    """

    threshold_dbfs: float = -45.0
    frame_ms: float = 10.0
    min_speech_ms: float = 100.0
    min_silence_ms: float = 500.0


@dataclass(frozen=True)
class DriftConfig:
    """The soak: how much audio, how it is cut into windows, and how resets are found.

    ``minutes``, ``speakers``, ``gap_s_range``, ``noise_dbfs`` and ``seed`` say how a provider
    composes the soak audio; the soak itself reads the windows and the VAD settings.
    """

    minutes: float = 30.0
    divergence_window_s: float = 10.0
    wer_window_s: float = 300.0
    speakers: tuple = ()  # empty: the model recipe's held-out speaker
    gap_s_range: tuple = (0.5, 4.0)  # silence between utterances, on top of their own
    noise_dbfs: float = NOISE_FLOOR_DBFS  # microphones never deliver digital silence
    vad: str = "energy"  # or "silero"
    energy_vad: EnergyVadConfig = field(default_factory=EnergyVadConfig)
    seed: int = 7

    def __post_init__(self):
        if self.minutes <= 0 or self.divergence_window_s <= 0 or self.wer_window_s <= 0:
            raise InvalidInputError("drift soak: minutes and window lengths must be positive")
        if self.vad not in ("energy", "silero"):
            raise InvalidInputError(f"drift soak: vad must be 'energy' or 'silero', got {self.vad!r}")


@dataclass
class SoakAudio:
    """waveform float32 [N] at ``sample_rate_hz``; utterances: (start_sample, end_sample, reference token ids)."""

    waveform: np.ndarray
    utterances: list
    sample_rate_hz: int = 16000
    description: dict = field(default_factory=dict)  # what the audio is (recorded in drift.json)


def energy_speech_mask(wave: np.ndarray, rate: int, cfg: EnergyVadConfig) -> np.ndarray:
    """bool per ``frame_ms`` frame: RMS above the threshold."""
    n = int(rate * cfg.frame_ms / 1000)
    frames = wave[: len(wave) // n * n].reshape(-1, n).astype(np.float64)
    rms_db = 10 * np.log10(np.mean(frames ** 2, axis=1) + 1e-12)
    return rms_db > cfg.threshold_dbfs


def silero_speech_mask(wave: np.ndarray, rate: int, frame_ms: float) -> np.ndarray:
    """Silero speech probability > 0.5, resampled onto ``frame_ms`` frames."""
    from ..runtime.vad import SileroVad

    vad = SileroVad(sample_rate_hz=rate)
    probs = vad.probabilities(wave)
    per_window = vad.window_samples
    n = int(rate * frame_ms / 1000)
    centers = (np.arange(len(wave) // n) * n) // per_window
    return probs[np.minimum(centers, len(probs) - 1)] > 0.5


def end_of_speech_samples(mask: np.ndarray, rate: int, cfg: EnergyVadConfig) -> list[int]:
    """Sample indices where an utterance ended: ``min_silence_ms`` of silence after enough speech."""
    n = int(rate * cfg.frame_ms / 1000)
    need_speech = max(1, int(cfg.min_speech_ms / cfg.frame_ms))
    need_silence = max(1, int(cfg.min_silence_ms / cfg.frame_ms))
    ends, speech_run, silence_run, in_speech = [], 0, 0, False
    for i, s in enumerate(mask):
        if s:
            speech_run, silence_run = speech_run + 1, 0
            if speech_run >= need_speech:
                in_speech = True
        else:
            speech_run, silence_run = 0, silence_run + 1
            if in_speech and silence_run >= need_silence:
                ends.append((i + 1) * n)
                in_speech = False
    return ends


def _reset_state(state: dict, card: ModelCard) -> dict:
    out = dict(state)
    for st in card.states:
        if st.reset_on_end_of_speech:
            out[st.name] = np.full_like(state[st.name], st.init)
    return out


def _lockstep(sessions: dict, card: ModelCard, feats: np.ndarray, reset_steps: set) -> dict:
    """Every model over the same chunks; returns per-model argmax ids [T] and per-step states."""
    n = max(card.streaming.frames_per_step, 1)
    main = card.output.port or card.outputs[0].name
    states = {k: s.init_state(1) for k, s in sessions.items()}
    ids = {k: [] for k in sessions}
    trace = {k: {st.name: [] for st in card.states} for k in sessions}
    for step, a in enumerate(range(0, len(feats) - n + 1, n)):
        chunk = np.ascontiguousarray(feats[None, a:a + n])
        for k, sess in sessions.items():
            if step in reset_steps:
                states[k] = _reset_state(states[k], card)
            out, states[k] = sess.run(chunk, states[k])
            ids[k].append(out[main][0].argmax(-1))
            for st in card.states:
                trace[k][st.name].append(states[k][st.name].reshape(-1).copy())
    return {"ids": {k: np.concatenate(v) for k, v in ids.items()},
            "states": {k: {s: np.stack(v) for s, v in d.items()} for k, d in trace.items()}}


AGE_BINS_S = (0.0, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, float("inf"))


def _state_age_s(steps: int, resets: set, step_s: float) -> np.ndarray:
    """Seconds of audio the state has accumulated at the end of each step (since start or last reset)."""
    age, out = 0, np.empty(steps)
    for k in range(steps):
        age = 1 if k in resets else age + 1
        out[k] = age * step_s
    return out


def _by_age(divergence: np.ndarray, age_s: np.ndarray) -> list:
    """Max divergence per bin of state age: does the error grow with how long the state has run?"""
    rows = []
    for lo, hi in zip(AGE_BINS_S[:-1], AGE_BINS_S[1:]):
        sel = (age_s > lo) & (age_s <= hi)
        if sel.any():
            rows.append({"age_s": [lo, hi], "steps": int(sel.sum()), "max": float(divergence[sel].max())})
    return rows


def _ctc_tokens(ids: np.ndarray, blank: int) -> list[tuple[int, int]]:
    """(frame, token) of a greedy CTC path (the runtime's decoder rule)."""
    return list(zip(*ctc_collapse(ids, blank)))


def _window_wer(tokens: list, audio: SoakAudio, hop: int, window_s: float, tail_s: float = 1.0) -> list:
    """WER per window of utterances (by start time); a hypothesis token belongs to the utterance whose
    span (plus ``tail_s``, the model's emission delay) holds its frame."""
    from ..metrics import edit_distance

    rate = audio.sample_rate_hz
    frames = np.array([t for t, _ in tokens], dtype=np.int64) * hop
    toks = [k for _, k in tokens]
    per_window: dict = {}
    for start, end, ref in audio.utterances:
        lo, hi = np.searchsorted(frames, start), np.searchsorted(frames, end + int(tail_s * rate))
        hyp = toks[lo:hi]
        w = int(start / rate // window_s)
        e, n = per_window.get(w, (0, 0))
        per_window[w] = (e + edit_distance(ref, hyp), n + len(ref))
    return [{"window": w, "start_s": w * window_s, "wer": e / max(n, 1), "words": n}
            for w, (e, n) in sorted(per_window.items())]


def drift_soak(models: dict, out_dir: str, *, audio: SoakAudio, cfg: DriftConfig = DriftConfig(), log=print) -> dict:
    """Run the soak over ``audio``. ``models``: name -> ONNX path, one of them named ``fp32`` (the reference).

    Writes ``drift.json`` and ``drift.png`` into ``out_dir`` (created if missing; each file
    atomically); returns the JSON document.
    """
    from ..atomic import atomic_write_text, check_output_path
    from ..runtime.frontend import FrontendConfig, compute_features
    from ..runtime.model_file import read_card
    from ..runtime.session import OnnxStepSession
    from .evaluate import certified_level

    if "fp32" not in models:
        raise InvalidInputError("drift soak: one model must be named 'fp32' (the reference)")
    check_output_path(out_dir, directory=True, replaceable=lambda _: True)  # a folder to write into
    card = read_card(models["fp32"])
    rate, hop = audio.sample_rate_hz, card.streaming.frame_hop_samples
    if rate != card.streaming.sample_rate_hz:
        raise InvalidInputError(f"drift soak: the audio is at {rate} Hz, the model takes {card.streaming.sample_rate_hz} Hz")
    log(f"soak audio: {len(audio.waveform) / rate / 60:.1f} min, {len(audio.utterances)} utterances")
    feats = compute_features(audio.waveform, FrontendConfig.from_dict(card.frontend))
    mask = energy_speech_mask(audio.waveform, rate, cfg.energy_vad) if cfg.vad == "energy" \
        else silero_speech_mask(audio.waveform, rate, cfg.energy_vad.frame_ms)
    ends = end_of_speech_samples(mask, rate, cfg.energy_vad)
    n = max(card.streaming.frames_per_step, 1)
    # A reset lands on the first step that starts at or after the end of speech.
    reset_steps = sorted({-(-(e // hop) // n) for e in ends})
    sessions = {k: OnnxStepSession(p, threads=1, optimization=certified_level(p)) for k, p in models.items()}
    steps_per_window = max(1, int(round(cfg.divergence_window_s * rate / hop / n)))
    doc = {"config": asdict(cfg), "audio": dict(audio.description), "audio_seconds": round(len(audio.waveform) / rate, 1),
           "utterances": len(audio.utterances), "resets": len(reset_steps), "models": dict(models),
           "step_seconds": n * hop / rate, "modes": {}}
    # With reset, a state never holds more than one reset interval of audio; without, the whole session.
    intervals = np.diff([0] + reset_steps) * n * hop / rate
    doc["max_reset_interval_s"] = round(float(intervals.max()) if len(intervals) else doc["audio_seconds"], 2)
    step_s = n * hop / rate
    for mode, resets in (("no-reset", set()), ("reset", set(reset_steps))):
        run = _lockstep(sessions, card, feats, resets)
        # One traced state per step (ids are output frames, fewer than input frames when subsampled).
        age_s = _state_age_s(len(next(iter(run["states"]["fp32"].values()))), resets, step_s)
        mode_doc = {}
        for k in models:
            if k == "fp32":
                continue
            per_state = {}
            for st in card.states:
                d = np.abs(np.subtract(run["states"][k][st.name], run["states"]["fp32"][st.name], dtype=np.float64)).max(axis=1)
                windows = [float(d[i:i + steps_per_window].max()) for i in range(0, len(d), steps_per_window)]
                per_state[st.output] = {"max": float(d.max()), "per_window_max": windows,
                                        "last_window_max": windows[-1], "first_window_max": windows[0],
                                        "by_state_age_s": _by_age(d, age_s[: len(d)])}
            mode_doc[k] = {"divergence": per_state}
        for k in models:
            toks = _ctc_tokens(run["ids"][k], card.output.blank_id or 0)
            wer = _window_wer(toks, audio, hop * card.streaming.subsampling, cfg.wer_window_s)
            total_e = sum(w["wer"] * w["words"] for w in wer)
            total_n = sum(w["words"] for w in wer)
            mode_doc.setdefault(k, {})["wer_per_window"] = wer
            mode_doc[k]["wer"] = total_e / max(total_n, 1)
        doc["modes"][mode] = mode_doc
        log(f"{mode}: " + ", ".join(f"{k} WER {100 * v['wer']:.2f} %" for k, v in mode_doc.items()))
    doc["max_state_age_s"] = {m: float(_state_age_s(len(feats) // n, r, step_s).max())
                              for m, r in (("no-reset", set()), ("reset", set(reset_steps)))}
    doc["reset_bounds_divergence"] = {
        k: {s: {"peak_no_reset": doc["modes"]["no-reset"][k]["divergence"][s]["max"],
                "peak_reset": doc["modes"]["reset"][k]["divergence"][s]["max"]}
            for s in doc["modes"]["reset"][k]["divergence"]}
        for k in models if k != "fp32"}
    os.makedirs(out_dir, exist_ok=True)
    atomic_write_text(os.path.join(out_dir, "drift.json"), json.dumps(doc, indent=1))
    doc["plot"] = plot_drift(doc, os.path.join(out_dir, "drift.png"))
    return doc


def plot_drift(doc: dict, path: str) -> str | None:
    """Divergence per window (one panel per state port) and WER per window; None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    models = [k for k in doc["modes"]["reset"] if k != "fp32" and "divergence" in doc["modes"]["reset"][k]]
    ports = list(doc["modes"]["reset"][models[0]]["divergence"]) if models else []
    fig, axes = plt.subplots(len(ports) + 1, 1, figsize=(10, 2.6 * (len(ports) + 1)), squeeze=False)
    win = doc["config"]["divergence_window_s"]
    for ax, port in zip(axes[:, 0], ports):
        for i, k in enumerate(models):
            for mode, style in (("no-reset", "--"), ("reset", "-")):
                y = doc["modes"][mode][k]["divergence"][port]["per_window_max"]
                ax.plot(np.arange(len(y)) * win / 60, y, style, color=f"C{i}", label=f"{k} {mode}")
        ax.set_yscale("symlog", linthresh=1e-4)
        ax.set_ylabel(f"max |{port} - fp32|")
        ax.legend(fontsize=7, ncol=2)
    ax = axes[-1, 0]
    wwin = doc["config"]["wer_window_s"]
    for i, k in enumerate(doc["modes"]["reset"]):
        for mode, style in (("no-reset", "--"), ("reset", "-")):
            w = doc["modes"][mode][k]["wer_per_window"]
            ax.plot([x["start_s"] / 60 + wwin / 120 for x in w], [100 * x["wer"] for x in w], style + "o",
                    color=f"C{i}", label=f"{k} {mode}", markersize=3)
    ax.set_ylabel(f"WER % per {wwin / 60:g} min")
    ax.set_xlabel("minutes into the session")
    ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"drift soak: {doc['audio_seconds'] / 60:.1f} min, {doc['resets']} resets "
                 f"(longest interval {doc['max_reset_interval_s']} s)")
    fig.tight_layout()
    from ..atomic import atomic_output

    with atomic_output(path) as target:
        fig.savefig(target.tmp, dpi=110, format="png")
        target.commit()
    plt.close(fig)
    return path
