"""``stateport quantize``: a reduced-precision artifact with its recipe, proofs and sizes in the card.

``--calib DIR`` calibrates ``static-int8`` on any recordings (or ``.npy`` features) for any model
with a frontend. Without it, and for ``qat-int8`` (which fine-tunes with a training step), the
digit recogniser's FSDD data is used (:mod:`stateport.train.quantize_data`); a model of your own
with your own training loop goes through the Python API (docs/quantization.md).

``--table`` instead measures FP32 / FP16 / dynamic / static / QAT int8 side by side on held-out
speech (WER per evaluation set, size, 1-thread RTF and step latency) in one run: see
:mod:`stateport.quantize.accuracy`; the digit recogniser's sets are
``stateport.train.quantize_data.table_sets`` (the held-out speaker's trimmed single digits as
recorded, and composed strings).

QAT on several CPU processes (DDP, gloo)::

    torchrun --standalone --nproc_per_node 2 -m stateport.cli.main quantize fp32.onnx -o qat.onnx \
        --recipe qat-int8 --checkpoint ckpt.pt
"""

from __future__ import annotations

from .args import positive_float, positive_int


def add_parser(sub):
    from ..quantize.recipes import ORT_LEVELS, PRESETS

    p = sub.add_parser("quantize", help="quantize an fp32 stateport ONNX model (int8 / fp16 / QAT) with proofs")
    p.add_argument("model", help="fp32 stateport .onnx file (from `stateport export`)")
    p.add_argument("-o", "--out", help="output .onnx path (a folder with --table); written only once proved")
    p.add_argument("--recipe", default="static-int8", choices=sorted(PRESETS), help="named recipe")
    p.add_argument("--calib", help="calibration data: a folder of recordings (.wav, .flac, ... at any rate) or of "
                                   ".npy features [T, F] (default: FSDD digit strings of the training speakers)")
    p.add_argument("--checkpoint", help="the float checkpoint the model was exported from (QAT fine-tunes it; "
                                        "its recipe names the test speaker calibration must not use)")
    p.add_argument("--module", help="FILE.py:OBJ, for models exported from --module (QAT rebuilds them)")
    p.add_argument("--seconds", type=positive_float, default=20.0,
                   help="input length of the parity proofs (at least 1 s)")
    p.add_argument("--ort-optimization", choices=ORT_LEVELS,
                   help="ONNX Runtime level the client uses (default: the recipe's)")
    p.add_argument("--table", action="store_true", help="accuracy table of every recipe on the held-out speaker's "
                                                       "trimmed digits and composed strings")
    p.add_argument("--table-utterances", type=positive_int, default=60, help="composed held-out strings for --table")
    p.add_argument("--qat-recipe", default="qat-int8", choices=sorted(k for k in PRESETS if k.startswith("qat")),
                   help="QAT preset used by --table")
    return p


def _digit_inputs(card, recipe: str, args, *, needs_calib: bool, needs_qat: bool) -> tuple:
    """The digit recogniser's calibration set and QAT task (FSDD through stateport.train), as needed."""
    from ..train.quantize_data import DigitQatTask, fsdd_calibration

    calib = args.calib
    if needs_calib and calib is None:
        from ..errors import MissingDataError

        try:
            calib = fsdd_calibration(args.checkpoint)
        except MissingDataError as e:  # the package ships the training speakers' recordings: say so
            from ..assets import calibration_dir

            raise MissingDataError(f"{e.message}; or calibrate on the 40 recordings the package ships: "
                                   f"--calib {calibration_dir()}") from None
    qat = DigitQatTask.for_card(card, checkpoint=args.checkpoint, recipe=recipe) if needs_qat else None
    return calib, qat


def run(args):
    from .. import progress
    from ..errors import InvalidInputError
    from ..quantize.recipes import QatInt8Config, StaticInt8Config, get_recipe
    from ..runtime.model_file import read_card

    if args.out is None:
        raise InvalidInputError("give -o/--out (an .onnx path; a folder with --table)")
    log = progress.step  # progress on stderr: stdout is the result
    card = read_card(args.model)
    if args.table:
        from ..quantize.accuracy import accuracy_table
        from ..train.quantize_data import table_sets

        with progress.task(f"accuracy table of every recipe for {args.model} on the held-out speaker's trimmed "
                           f"digits and {args.table_utterances} composed strings"):
            calib, qat = _digit_inputs(card, args.qat_recipe, args, needs_calib=True, needs_qat=True)
            sets = table_sets(args.checkpoint, strings=args.table_utterances)
            table = accuracy_table(args.model, args.out, sets=sets, checkpoint=args.checkpoint, calib=calib,
                                   qat=qat, qat_recipe=args.qat_recipe, log=log)
        if not args.json:
            print(table.to_text())
        return 0, table.to_dict()
    from ..quantize import quantize_model

    cfg = get_recipe(args.recipe)
    with progress.task(f"quantize {args.model} ({args.recipe}), prove it over {args.seconds:g} s and measure it "
                       "against fp32 on real speech"):
        calib, qat = _digit_inputs(card, args.recipe, args, needs_calib=isinstance(cfg, StaticInt8Config),
                                   needs_qat=isinstance(cfg, QatInt8Config))
        result = quantize_model(args.model, args.out, recipe=args.recipe, calib=calib, qat=qat,
                                module=args.module, checkpoint=args.checkpoint, seconds=args.seconds,
                                ort_optimization=args.ort_optimization, log=log)
    if result.path is None:  # a torchrun worker other than rank 0
        return 0, result.to_dict()
    if not args.json:
        q = result.card.provenance.quantization
        dev = q.get("float_deviation", {})
        print(f"wrote {result.path}: {args.recipe}, {result.sizes['bytes']} bytes "
              f"({100 * result.sizes['ratio']:.1f} % of fp32), proved at ORT level {q['ort_graph_optimization']}")
        for report in result.reports.values():
            print(report.to_text())
        if "argmax_agreement" in dev:
            print(f"fp32 vs {args.recipe} on real speech: max |diff| {dev.get('max_abs_diff')}, "
                  f"argmax agreement {100 * dev['argmax_agreement']:.2f} %")
    return 0, result.to_dict()
