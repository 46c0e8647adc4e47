"""``stateport train``: train the streaming CTC digit recogniser (the built-in model's recipe)."""

from __future__ import annotations

from .args import nonneg_float, nonneg_int, positive_float, positive_int, probability

def add_parser(sub):
    from ..train.config import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("train", help="train a streaming CTC digit-string recogniser on FSDD + espeak-ng speech")
    p.add_argument("-o", "--out", required=True, help="checkpoint path (.pt)")
    p.add_argument("--arch", default=d.arch)
    p.add_argument("--size", default=d.size)
    p.add_argument("--test-speaker", default=d.test_speaker, help="FSDD speaker never heard in training")
    p.add_argument("--dev-speaker", default=d.dev_speaker,
                   help="FSDD speaker for checkpoint choice ('next'), or 'none' to train on every other speaker "
                        "and choose on held-out espeak-ng voices")
    p.add_argument("--dropout", type=probability, default=0.0, help="dropout between recurrent layers")
    p.add_argument("--spec-augment", action="store_true", help="SpecAugment frequency and time masks")
    p.add_argument("--channel-eq", type=probability, default=d.channel_eq_probability, metavar="P",
                   help="chance that an utterance's features get a random channel curve (0 = off)")
    p.add_argument("--ema-decay", type=probability, default=d.ema_decay,
                   help="keep an exponential moving average of the weights (e.g. 0.999; 0 = off)")
    p.add_argument("--mel-bins", type=positive_int, default=None, help="log-mel bins (default: the architecture's 80)")
    p.add_argument("--high-freq-hz", type=positive_float, default=None,
                   help="top mel-filter edge (default: Nyquist); ~3800 for telephone-band training speech")
    p.add_argument("--subsampling", type=positive_int, default=None,
                   help="frames stacked per recurrent step (lstm-ctc; 3 = 30 ms steps)")
    p.add_argument("--online-cmn-frames", type=nonneg_float, default=None, metavar="N",
                   help="subtract the running feature mean, starting from a prior worth N frames")
    p.add_argument("--speed-range", type=positive_float, nargs=2, default=None, metavar=("LOW", "HIGH"))
    p.add_argument("--onset-cut", type=probability, default=0.0, metavar="P",
                   help="chance that a clip loses the start of its word (by default 0-30 ms past its speech onset; "
                        "see the next two options), as FSDD's trimmed recordings often do (0 = off)")
    p.add_argument("--onset-cut-level-db", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="where a cut word starts: the first 10 ms reaching this level relative to the clip's "
                        "loudest 10 ms, uniform in dB (default -20 -20: the onset; 0 cuts to the loudest 10 ms)")
    p.add_argument("--onset-cut-ms", type=nonneg_float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="how far past that point the cut falls, uniform in ms (default 0 30)")
    p.add_argument("--steps", type=positive_int, default=d.steps)
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    p.add_argument("--learning-rate", type=positive_float, default=d.learning_rate)
    p.add_argument("--eval-every", type=positive_int, default=d.eval_every)
    p.add_argument("--seed", type=nonneg_int, default=d.seed)
    p.add_argument("--device", default=d.device, help="torch device for the model, e.g. 'cuda' (data is made on CPU)")
    p.add_argument("--data-workers", type=nonneg_int, default=d.data_workers, help="processes making training batches")
    p.add_argument("--pool-batches", type=nonneg_int, default=d.pool_batches, metavar="N",
                   help="draw N training batches once and train by cycling through them (0 = fresh batches every "
                        "step); for architectures with a frozen pretrained part (embedding-ctc), whose batches "
                        "are costly to make")
    p.add_argument("--pool-file", default=None, metavar="PATH",
                   help="save that pool here, or load it if a run with the same data settings saved it "
                        "(to compare ways of training the head on one pool)")
    p.add_argument("--input-dropout", type=probability, default=0.0, metavar="P",
                   help="dropout on what the trained layers read (embedding-ctc: the embeddings), in training")
    p.add_argument("--input-noise", type=nonneg_float, default=0.0, metavar="STD",
                   help="Gaussian noise added in training to what the trained layers read, after their "
                        "normalisation (embedding-ctc; std in units of each input's spread)")
    p.add_argument("--no-synthetic", action="store_true", help="train on FSDD only (no espeak-ng)")
    p.add_argument("--fsdd-weight", type=nonneg_float, default=d.fsdd_weight, metavar="W",
                   help="weight of the real FSDD training speakers among the sources (a batch draws each "
                        "source in proportion to its weight)")
    p.add_argument("--synthetic-weight", type=nonneg_float, default=d.synthetic_weight, metavar="W",
                   help="weight of the espeak-ng voices among the sources")
    p.add_argument("--flite-weight", type=nonneg_float, default=0.0, metavar="W",
                   help="add voices built from recordings of real speakers (flite, festival; see "
                        "--recorded-voices) as a source of weight W (FSDD and espeak-ng weigh 1; 0 = off)")
    p.add_argument("--recorded-voices", default=",".join(d.recorded_voices), metavar="NAMES",
                   help="comma-separated voices for --flite-weight: kal16, awb, rms, slt ('apt-get install "
                        "flite'), ked ('apt-get install festival festvox-kdlpc16k')")
    p.add_argument("--voice-shift-weight", type=nonneg_float, default=d.voice_shift_weight, metavar="W",
                   help="add virtual speakers made from the FSDD training speakers (Praat 'Change gender': "
                        "new formant ratio and pitch each) as a source of weight W (0 = off; needs "
                        "praat-parselmouth: pip install 'stateport[train]')")
    p.add_argument("--voice-shifts", type=positive_int, default=d.voice_shift_speakers_per_speaker, metavar="K",
                   help="virtual speakers per FSDD training speaker")
    p.add_argument("--num-digits", type=int, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help=f"digits per training string (default {d.num_digits_range[0]} {d.num_digits_range[1]})")
    p.add_argument("--emission-delay-ms", type=float, default=d.emission_delay_ms, metavar="MS",
                   help="how long after its word a digit may still be emitted (the CTC emission window; it sets "
                        "how much trailing audio the model needs at the end of input)")
    p.add_argument("--connected", type=float, default=0.0, metavar="P",
                   help="chance that a string of clips is spoken connected: no pauses, clips overlapping by up "
                        "to 80 ms, cross-faded, and no lead before the first word")
    p.add_argument("--flush", type=float, default=0.0, metavar="P",
                   help="chance that an utterance ends on its last word and gets digital silence after it (what "
                        "a trimmed recording plus the runtime's end-of-input flush looks like)")
    p.add_argument("--connected-lead-ms", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="silence before a connected string, uniform in ms (default 0 150)")
    p.add_argument("--start-on-word", type=float, default=0.0, metavar="P",
                   help="chance that an utterance starts on its first sound, no lead at all (a trimmed recording)")
    p.add_argument("--repeat", type=float, default=0.0, metavar="P",
                   help="chance that each digit of a string repeats the one before ('three three three')")
    p.add_argument("--filler", type=float, default=0.0, metavar="P",
                   help="chance that a digit string of a synthetic voice gets other speech of that voice around it")
    p.add_argument("--tempo", type=float, default=0.0, metavar="P",
                   help="chance that a string of clips is spoken 1.1-1.4 times faster at the same pitch (sox tempo)")
    p.add_argument("--dev-utterances", type=int, default=d.dev_utterances, metavar="N",
                   help="utterances of the development set the checkpoint is chosen on")
    p.add_argument("--string-weight", type=float, default=0.0, metavar="W",
                   help="add digit strings spoken whole (coarticulated, at drawn rates) by the espeak-ng training "
                        "voices as a source of weight W")
    p.add_argument("--recorded-string-weight", type=float, default=0.0, metavar="W",
                   help="the same, spoken by the --recorded-voices")
    p.add_argument("--negative-weight", type=float, default=0.0, metavar="W",
                   help="add utterances without digits (sentences of other words in the training voices, noise, "
                        "silence; empty targets) as a source of weight W")
    p.add_argument("--keep-eval-checkpoints", action="store_true",
                   help="also save the checkpoint of every evaluation in OUT-without-.pt.evals/ (with an average "
                        "of weights, the raw weights too), to study how a held-out figure varies along a run")
    p.add_argument("--no-progress", action="store_true")
    return p


def config_from_args(args):
    """The TrainConfig a parsed ``stateport train`` command line stands for."""
    from ..train.config import TrainConfig

    dev = None if str(args.dev_speaker).lower() == "none" else args.dev_speaker
    augment = {"speed_range": tuple(args.speed_range)} if args.speed_range else {}
    if args.onset_cut:
        augment["onset_cut_probability"] = args.onset_cut
    if args.onset_cut_level_db:
        augment["onset_cut_level_db_range"] = tuple(args.onset_cut_level_db)
    if args.onset_cut_ms:
        augment["onset_cut_ms_range"] = tuple(args.onset_cut_ms)
    if args.tempo:
        augment["tempo_probability"] = args.tempo
    compose = {name: value for name, value in (("connected_probability", args.connected),
                                               ("flush_probability", args.flush),
                                               ("repeat_probability", args.repeat),
                                               ("filler_probability", args.filler),
                                               ("start_on_word_probability", args.start_on_word)) if value}
    if args.connected_lead_ms:
        compose["connected_leading_ms_range"] = tuple(args.connected_lead_ms)
    overrides = {"dropout": args.dropout} if args.dropout else {}
    if args.input_dropout:
        overrides["input_dropout"] = args.input_dropout
    if args.input_noise:
        overrides["input_noise"] = args.input_noise
    if args.mel_bins:
        overrides["input_dim"] = args.mel_bins
    if args.high_freq_hz is not None:
        overrides["high_freq_hz"] = args.high_freq_hz
    if args.subsampling:
        overrides["subsampling"] = args.subsampling
    if args.online_cmn_frames:
        overrides["online_cmn_frames"] = args.online_cmn_frames
    return TrainConfig(arch=args.arch, size=args.size, test_speaker=args.test_speaker, dev_speaker=dev,
                       augment=augment, arch_overrides=overrides, spec_augment=args.spec_augment,
                       channel_eq_probability=args.channel_eq, ema_decay=args.ema_decay,
                       steps=args.steps, batch_size=args.batch_size, learning_rate=args.learning_rate,
                       eval_every=args.eval_every, seed=args.seed, use_synthetic=not args.no_synthetic,
                       device=args.device, data_workers=args.data_workers, pool_batches=args.pool_batches,
                       pool_file=args.pool_file,
                       flite_weight=args.flite_weight,
                       fsdd_weight=args.fsdd_weight, synthetic_weight=args.synthetic_weight,
                       recorded_voices=tuple(n.strip() for n in args.recorded_voices.split(",") if n.strip()),
                       voice_shift_weight=args.voice_shift_weight,
                       voice_shift_speakers_per_speaker=args.voice_shifts,
                       keep_eval_checkpoints=args.keep_eval_checkpoints, compose=compose, dev_utterances=args.dev_utterances,
                       emission_delay_ms=args.emission_delay_ms, string_weight=args.string_weight,
                       recorded_string_weight=args.recorded_string_weight, negative_weight=args.negative_weight,
                       **({"num_digits_range": tuple(args.num_digits)} if args.num_digits else {}))


def run(args):
    from ..atomic import check_output_path
    from ..train.trainer import train

    check_output_path(args.out)  # before any training: the first save would fail there
    cfg = config_from_args(args)
    from .. import progress

    # The bar and the evaluations go to stderr: they may run beside --json (stdout stays one
    # document); --quiet (or --no-progress) stops the bar, --quiet the lines too.
    result = train(cfg, args.out, progress=not (args.no_progress or args.quiet), log=progress.step)
    doc = {"checkpoint": result.checkpoint_path, "best_step": result.best_step,
           "best_dev_wer": result.best_dev_wer, "history": result.history, "config": cfg.to_dict()}
    if not args.json:
        print(f"wrote {result.checkpoint_path}: best dev WER {100 * result.best_dev_wer:.2f} % at step {result.best_step}")
    return 0, doc
