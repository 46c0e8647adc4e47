"""Digit-string training data: composition spans, splits, augmentation, FSDD and espeak-ng."""

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from stateport.errors import InvalidInputError
from stateport.train import synth
from stateport.train.augment import (
    NO_AUGMENTATION,
    AugmentConfig,
    augment_waveform,
    colored_noise,
    cut_onset,
    limit_peak,
    speech_onset_sample,
    speed_perturb,
)
from stateport.train.data import (
    BLANK_ID,
    DIGIT_VOCABULARY,
    Clip,
    ClipSource,
    ComposeConfig,
    compose_utterance,
    emission_mask,
    iterate_batches,
    make_batch,
    make_utterance,
    spans_to_frame_spans,
    token_ids_to_digits,
)
from stateport.train.fsdd import (
    FSDD_SPEAKERS,
    SpeakerSplit,
    fsdd_dir,
    leave_one_speaker_out,
    leave_one_speaker_out_splits,
    load_fsdd,
    select_speakers,
)

SR = 16_000


# A few FSDD recordings ship with the repository (with their attribution): the loader is tested on
# them, so it runs on a clone with nothing beside it.
TEST_FSDD_DIR = Path(__file__).resolve().parents[1] / "data" / "fsdd"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")


def _fake_clips(speakers=("alice", "bob", "carol"), per_digit=2, seed=0):
    """Random 'clips' of distinct lengths: cheap stand-ins for real recordings."""
    rng = np.random.default_rng(seed)
    clips = []
    for s in speakers:
        for d in range(10):
            for k in range(per_digit):
                n = int(rng.integers(2000, 9000))
                w = (0.3 * rng.uniform(-1, 1, n)).astype(np.float32)
                clips.append(Clip(w, d, s, "fake", f"{d}_{s}_{k}"))
    return clips


def test_vocabulary_blank_first_then_digits():
    assert BLANK_ID == 0
    assert DIGIT_VOCABULARY == ("<blank>", "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    assert token_ids_to_digits([0, 4, 0, 1, 10]) == [3, 0, 9]


def test_composition_spans_hold_each_clip_after_its_gain():
    clips = _fake_clips(speakers=("alice",))
    rng = np.random.default_rng(1)
    chosen = [clips[i] for i in rng.choice(len(clips), size=8, replace=False)]
    config = ComposeConfig()
    u = compose_utterance(chosen, rng, config=config, clip_gain_jitter_db=6.0)

    assert u.waveform.dtype == np.float32 and u.token_ids.tolist() == [c.digit + 1 for c in chosen]
    outside = np.ones(u.waveform.shape[0], dtype=bool)
    for (s, e), clip, g in zip(u.spans_samples, chosen, u.clip_gains):
        np.testing.assert_array_equal(u.waveform[s:e], clip.waveform * g)
        assert 10 ** (-6 / 20) - 1e-6 <= g <= 10 ** (6 / 20) + 1e-6
        outside[s:e] = False
    assert not np.any(u.waveform[outside])  # silence is exact zeros before augmentation
    starts, ends = u.spans_samples[:, 0], u.spans_samples[:, 1]
    pauses_ms = (starts[1:] - ends[:-1]) * 1000 / SR
    assert np.all(pauses_ms >= 50 - 0.1) and np.all(pauses_ms <= 400 + 0.1)
    assert 100 - 0.1 <= starts[0] * 1000 / SR <= 800 + 0.1
    assert 300 - 0.1 <= (u.waveform.shape[0] - ends[-1]) * 1000 / SR <= 800 + 0.1


def test_frame_spans_and_emission_mask_numbers():
    spans = np.array([[1600, 4800], [6000, 6100]])
    fs = spans_to_frame_spans(spans, 160, delay_samples=4800, num_frames=70)
    # [1600/160, ceil((4800+4800)/160)] = [10, 60]; second: [37, ceil(10900/160)=69]
    assert fs.tolist() == [[10, 60], [37, 69]]
    fs = spans_to_frame_spans(spans, 160, delay_samples=4800, num_frames=65)
    assert fs.tolist() == [[10, 60], [37, 65]]
    assert spans_to_frame_spans(np.array([[320, 330]]), 160).tolist() == [[2, 3]]  # never empty
    mask = emission_mask(np.array([[1, 3], [0, 0]]), 5)
    assert mask.tolist() == [[False, True, True, False, False], [False] * 5]


def test_batch_shapes_padding_and_spans():
    source = ClipSource("fake", _fake_clips())
    batch = make_batch(np.random.default_rng(3), 6, [source], num_digits_range=(1, 8))
    B, N = batch.waveforms.shape
    assert B == 6 and batch.waveforms.dtype == np.float32 and N == batch.waveform_lengths.max()
    assert batch.targets.shape == (6, batch.target_lengths.max()) and batch.targets.dtype == np.int64
    for b in range(B):
        u = batch.target_lengths[b]
        assert 1 <= u <= 8
        assert np.all((batch.targets[b, :u] >= 1) & (batch.targets[b, :u] <= 10))
        assert np.all(batch.targets[b, u:] == BLANK_ID) and np.all(batch.spans_samples[b, u:] == -1)
        assert np.all(batch.waveforms[b, batch.waveform_lengths[b] :] == 0)
        # Trailing silence: the last clip ends at least 300 ms before the utterance does
        # (speed perturbation happens before composition, so the spans stay exact).
        assert batch.waveform_lengths[b] - batch.spans_samples[b, u - 1, 1] >= int(0.3 * SR) - 1
    shift = 640
    T = int(-(-N // shift))
    mask = batch.emission_mask(shift, T, delay_samples=int(0.3 * SR))
    assert mask.shape == (6, batch.targets.shape[1], T)
    for b in range(B):
        u = batch.target_lengths[b]
        assert mask[b, :u].any(axis=1).all() and not mask[b, u:].any()


def test_batches_are_deterministic_given_the_seed_and_mix_sources():
    a = ClipSource("a", _fake_clips(speakers=("alice",)), weight=1.0)
    b = ClipSource("b", _fake_clips(speakers=("bob",), seed=1), weight=3.0)
    one = list(iterate_batches(7, 8, [a, b], num_batches=2))
    two = list(iterate_batches(7, 8, [a, b], num_batches=2))
    for x, y in zip(one, two):
        np.testing.assert_array_equal(x.waveforms, y.waveforms)
        np.testing.assert_array_equal(x.targets, y.targets)
        np.testing.assert_array_equal(x.spans_samples, y.spans_samples)
    other = next(iterate_batches(8, 8, [a, b], num_batches=1))
    assert not np.array_equal(other.targets, one[0].targets) or other.waveforms.shape != one[0].waveforms.shape
    many = make_batch(np.random.default_rng(0), 200, [a, b], num_digits_range=(1, 1))
    share_b = sum(s == "b" for s in many.sources) / 200
    assert 0.65 <= share_b <= 0.85  # weight 3:1


def test_augmentation_is_deterministic_finite_and_in_range():
    rng = np.random.default_rng(0)
    x = (0.5 * rng.uniform(-1, 1, 32000)).astype(np.float32)
    spans = np.array([[4000, 28000]])
    config = AugmentConfig(noise_probability=1.0)
    outs = [augment_waveform(np.random.default_rng(5), x, config, speech_spans_samples=spans) for _ in range(2)]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert outs[0].dtype == np.float32 and outs[0].shape == x.shape
    assert np.all(np.isfinite(outs[0])) and np.abs(outs[0]).max() <= 0.99 + 1e-6
    assert not np.array_equal(outs[0], augment_waveform(np.random.default_rng(6), x, config, speech_spans_samples=spans))
    # Gain range: -20..+6 dB of a quiet input, no noise, no limiting needed.
    quiet = x * np.float32(0.1)
    cfg = AugmentConfig(noise_probability=0.0)
    ratios = [np.abs(augment_waveform(np.random.default_rng(s), quiet, cfg)).max() / np.abs(quiet).max() for s in range(50)]
    assert 0.1 - 1e-6 <= min(ratios) < 0.3 and 1.2 < max(ratios) <= 2.0 + 1e-6
    np.testing.assert_array_equal(augment_waveform(np.random.default_rng(0), x, NO_AUGMENTATION), x)


def test_noise_colors_have_unit_rms_and_their_spectral_tilt():
    tilt = {}
    for color in ("white", "pink", "brown"):
        n = colored_noise(np.random.default_rng(0), 64000, color)
        assert n.dtype == np.float32 and abs(np.sqrt(np.mean(n.astype(np.float64) ** 2)) - 1) < 1e-4
        p = np.abs(np.fft.rfft(n)) ** 2
        low, high = p[10:1000].mean(), p[10000:20000].mean()
        tilt[color] = 10 * np.log10(low / high)
    assert abs(tilt["white"]) < 1.5
    assert 8 < tilt["pink"] < 20  # 10*log10(~15000/~500) ~ 15 dB for 1/f
    assert tilt["brown"] > 2 * tilt["pink"] - 5


def test_speed_perturb_and_peak_limit():
    x = np.sin(np.arange(16000) * 0.05).astype(np.float32)
    assert abs(speed_perturb(x, 1.1).shape[0] - 16000 / 1.1) <= 1
    assert abs(speed_perturb(x, 0.9).shape[0] - 16000 / 0.9) <= 1
    y, scale = limit_peak(x * 3, 0.99)
    assert abs(np.abs(y).max() - 0.99) < 1e-6 and scale < 1
    with pytest.raises(InvalidInputError):
        speed_perturb(x, 3.0)


def test_onset_cut_removes_the_start_of_the_word_and_keeps_the_rest():
    # 200 ms of near-silence, then a 300 ms tone: the onset is where the tone starts.
    quiet = np.full(3200, 1e-4, np.float32)
    tone = (0.5 * np.sin(np.arange(4800) * 0.3)).astype(np.float32)
    x = np.concatenate([quiet, tone])
    onset = speech_onset_sample(x, SR)
    assert 3200 - 160 <= onset <= 3200  # within the 10 ms energy window before the tone
    cut = cut_onset(x, 20.0, SR)
    np.testing.assert_array_equal(cut, x[onset + 320:])  # 20 ms past the onset
    assert cut_onset(x, 1000.0, SR).shape[0] == 1600  # never less than 100 ms of the clip left
    assert speech_onset_sample(np.zeros(4000, np.float32), SR) == 0
    with pytest.raises(InvalidInputError, match="onset_cut_probability"):
        AugmentConfig(onset_cut_probability=1.5)


def test_onset_cut_at_a_level_starts_the_word_where_it_first_gets_that_loud():
    # A word that swells: 100 ms at each of four levels 10 dB apart (energy), then its loudest 100 ms.
    levels_db = [-40.0, -30.0, -20.0, -10.0, 0.0]
    x = np.concatenate([10 ** (db / 20) * np.sin(np.arange(1600) * 0.3) for db in levels_db]).astype(np.float32)
    assert speech_onset_sample(x, SR) == speech_onset_sample(x, SR, -20.0)  # the default is the -20 dB onset
    for i, db in enumerate(levels_db):
        start = speech_onset_sample(x, SR, db - 5.0)  # 5 dB below part i: reached first in part i
        assert 1600 * i - 160 <= start <= 1600 * i, (db, start)  # within the 10 ms window before that part
    assert 1600 * 4 - 160 <= speech_onset_sample(x, SR, 0.0) < 8000  # 0 dB: the loudest 10 ms itself
    # 0 dB: the clip starts at its loudest 10 ms, keeping >= 100 ms; the ms offset is added after the level.
    assert cut_onset(x, 0.0, SR, 0.0).shape[0] >= 1600
    np.testing.assert_array_equal(cut_onset(x, 10.0, SR, -10.0), x[speech_onset_sample(x, SR, -10.0) + 160:])
    with pytest.raises(InvalidInputError, match="onset_cut_level_db_range"):
        AugmentConfig(onset_cut_level_db_range=(-10.0, 3.0))


def test_onset_cut_level_draws_only_when_it_is_a_range():
    source = [ClipSource("a", _fake_clips(speakers=("alice",)))]
    old = dataclasses.replace(NO_AUGMENTATION, onset_cut_probability=0.5)
    fixed = dataclasses.replace(old, onset_cut_level_db_range=(-20.0, -20.0))
    drawn = dataclasses.replace(old, onset_cut_level_db_range=(-20.0, 0.0))
    a = make_batch(np.random.default_rng(4), 6, source, augment=old)
    b = make_batch(np.random.default_rng(4), 6, source, augment=fixed)
    c = make_batch(np.random.default_rng(4), 6, source, augment=drawn)
    np.testing.assert_array_equal(a.waveforms, b.waveforms)  # a fixed level replays the older onset-cut recipe
    assert a.waveforms.shape != c.waveforms.shape or not np.array_equal(a.waveforms, c.waveforms)


def test_onset_cut_shortens_clips_keeps_spans_exact_and_draws_nothing_when_off():
    source = [ClipSource("a", _fake_clips(speakers=("alice",)))]
    off = make_batch(np.random.default_rng(3), 6, source, augment=NO_AUGMENTATION)
    same = make_batch(np.random.default_rng(3), 6, source,
                      augment=dataclasses.replace(NO_AUGMENTATION, onset_cut_probability=0.0))
    np.testing.assert_array_equal(off.waveforms, same.waveforms)  # 0 draws nothing: old recipes replay
    cut_all = dataclasses.replace(NO_AUGMENTATION, onset_cut_probability=1.0, onset_cut_ms_range=(20.0, 20.0))
    for seed in range(5):
        # The first utterance of a generator draws its digits before any cut: same digits, shorter clips.
        _, whole = make_utterance(np.random.default_rng(seed), source, augment=NO_AUGMENTATION)
        _, cut = make_utterance(np.random.default_rng(seed), source, augment=cut_all)
        np.testing.assert_array_equal(cut.token_ids, whole.token_ids)
        # fake clips are loud from their first sample: the onset is 0, so each loses 20 ms
        np.testing.assert_array_equal(np.diff(cut.spans_samples, axis=1), np.diff(whole.spans_samples, axis=1) - 320)


def test_speaker_splits_never_leak():
    splits = leave_one_speaker_out_splits()
    assert [s.test for s in splits] == [(s,) for s in FSDD_SPEAKERS]
    assert sorted(d for s in splits for d in s.dev) == sorted(FSDD_SPEAKERS)  # each is dev once
    clips = _fake_clips(speakers=FSDD_SPEAKERS, per_digit=1)
    for split in splits:
        assert set(split.train) | set(split.dev) | set(split.test) == set(FSDD_SPEAKERS)
        assert not set(split.train) & (set(split.dev) | set(split.test))
        assert not set(split.dev) & set(split.test)
        train_clips = select_speakers(clips, split.train)
        assert {c.speaker for c in train_clips} == set(split.train)
        source = ClipSource("train", train_clips)
        batch = make_batch(np.random.default_rng(0), 16, [source], augment=NO_AUGMENTATION)
        assert set(batch.speakers) <= set(split.train)
    assert leave_one_speaker_out("lucas", dev_speaker=None).train == ("george", "jackson", "nicolas", "yweweler")
    with pytest.raises(InvalidInputError):
        SpeakerSplit(train=("george", "lucas"), dev=(), test=("lucas",))
    with pytest.raises(InvalidInputError):
        leave_one_speaker_out("nobody")


def test_espeak_voice_split_holds_out_whole_variants():
    voices = [synth.EspeakVoice(l, v) for l in ("en-us", "en-gb") for v in ("m1", "m2", "f1", "f2", "klatt")]
    train, held = synth.split_espeak_voices(voices, held_out_fraction=0.4, seed=3)
    assert len(train) + len(held) == len(voices) and held
    assert not {v.variant for v in train} & {v.variant for v in held}
    train, held = synth.split_espeak_voices(voices, held_out_variants=["f2"])
    assert {v.name for v in held} == {"en-us+f2", "en-gb+f2"}


@pytest.mark.parametrize("layout", ["recordings", "root"])
def test_fsdd_loads_resampled_to_16k(monkeypatch, tmp_path, layout):
    # STATEPORT_FSDD_DIR may name the recordings folder itself or the data set root holding recordings/.
    if layout == "root":
        (tmp_path / "recordings").symlink_to(TEST_FSDD_DIR, target_is_directory=True)
    monkeypatch.setenv("STATEPORT_FSDD_DIR", str(TEST_FSDD_DIR if layout == "recordings" else tmp_path))
    clips = load_fsdd(speakers=["george", "yweweler"], indices=[0, 1], digits=[0, 7])
    assert len(clips) == 2 * 2 * 2
    assert [c.speaker for c in clips] == ["george"] * 4 + ["yweweler"] * 4
    folder = fsdd_dir()
    assert folder.resolve() == TEST_FSDD_DIR
    for c in clips:
        info = sf.info(str(folder / c.name))
        assert info.samplerate == 8000
        assert c.num_samples == 2 * info.frames  # 8 kHz -> 16 kHz
        assert c.waveform.dtype == np.float32 and np.abs(c.waveform).max() <= 1.0
        assert c.source == "fsdd" and c.name.startswith(f"{c.digit}_{c.speaker}_")
    with pytest.raises(InvalidInputError, match="unknown FSDD speaker"):
        load_fsdd(speakers=["nobody"])


def test_fsdd_missing_directory_is_a_clear_error(monkeypatch, tmp_path):
    from stateport.errors import MissingDataError

    monkeypatch.setenv("STATEPORT_FSDD_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(MissingDataError, match="STATEPORT_FSDD_DIR") as e:
        fsdd_dir()
    # One line that says what needs the data and where it comes from; exit status 2 like any bad input.
    assert "free-spoken-digit-dataset" in e.value.message and "\n" not in e.value.message
    assert e.value.code == "MISSING_DATA" and e.value.exit_code == 2


@needs_espeak
def test_espeak_synthesis_is_16k_trimmed_and_cached(tmp_path, monkeypatch):
    voices = [synth.EspeakVoice("en-us", "m3"), synth.EspeakVoice("en-gb", "f2")]
    assert set(voices) <= set(synth.list_espeak_voices())
    clips = synth.synthesize_digits(voices, digits=[6, 7], renditions_per_digit=2, seed=1, cache_dir=tmp_path)
    assert len(clips) == 2 * 2 * 2
    assert [(c.speaker, c.digit) for c in clips[:4]] == [("en-us+m3", 6)] * 2 + [("en-us+m3", 7)] * 2
    for c in clips:
        assert c.waveform.dtype == np.float32 and np.all(np.isfinite(c.waveform))
        assert 0.15 * SR < c.num_samples < 1.5 * SR
        assert abs(np.abs(c.waveform).max() - 0.5) < 1e-5
        # Trimmed: the first and last 10 ms are within the trim margin, not long silences.
        assert np.abs(c.waveform[:480]).max() > 0 and np.abs(c.waveform[-480:]).max() > 0
    files = sorted(p for p in tmp_path.rglob("*.wav"))
    assert len(files) == len({c.name for c in clips}) and all(not p.name.startswith(".") for p in files)

    # A second run reads the cache: espeak-ng must not be called again.
    def no_espeak(*args, **kwargs):
        raise AssertionError(f"espeak-ng called despite the cache: {args}")

    monkeypatch.setattr(synth.subprocess, "run", no_espeak)
    again = synth.synthesize_digits(voices, digits=[6, 7], renditions_per_digit=2, seed=1, cache_dir=tmp_path)
    for a, b in zip(clips, again):
        np.testing.assert_array_equal(a.waveform, b.waveform)
        assert a.name == b.name
