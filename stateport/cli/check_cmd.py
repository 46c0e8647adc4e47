"""``stateport check FILE --target snpe|qnn``: readiness for a vendor toolchain we cannot run here."""

from __future__ import annotations


def add_parser(sub):
    p = sub.add_parser("check", help="check an exported .onnx file for the Qualcomm SNPE/QNN converters "
                                     "(static shapes, opset, documented ops, LSTM, conversion commands)")
    p.add_argument("file", help="a stateport .onnx file (export it with --static for SNPE/QNN)")
    p.add_argument("--target", required=True, choices=["snpe", "qnn"], help="the Qualcomm toolchain")
    p.add_argument("--fix-out", metavar="FIXED.onnx",
                   help="also write a copy whose state inputs have no initializer defaults (and its card as "
                        "FIXED.onnx.card.json), and print the commands for it")
    return p


def run(args):
    from ..check import check_qualcomm

    report = check_qualcomm(args.file, args.target, fix_out=args.fix_out)
    if not args.json:
        print(report.to_text())
    # Exit 1 when an error finding says the conversion would fail, so scripts notice.
    return (0 if report.ready else 1), report.to_dict()
