"""``stateport verify``: re-run the parity proof of an exported file against its torch reference."""

from __future__ import annotations

from ..verify import DEFAULT_SECONDS, DEFAULT_TOLERANCE


def add_parser(sub):
    p = sub.add_parser("verify", help="prove an exported model equals its torch reference, streaming and offline")
    p.add_argument("file", help="an exported .onnx file (or .tflite, .pte, OpenVINO .xml, .mlpackage)")
    p.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="input length (default 60 s)")
    p.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, help="max |diff| allowed")
    p.add_argument("--module", help="FILE.py:OBJ, for models exported from --module")
    p.add_argument("--checkpoint", help="the checkpoint the model was exported from, if any")
    p.add_argument("--optimization", default="all", choices=["disable", "basic", "extended", "all"],
                   help="ONNX Runtime graph optimisation level to verify at (the client's)")
    p.add_argument("--write-certificate", action="store_true", help="store the new certificate in the card")
    return p


def run(args):
    from ..export import verify_file

    if not args.file.rstrip("/").endswith(".onnx"):
        # .tflite, .pte, .xml, .mlpackage: the backend's own runner (a quantised card keeps its own tolerance)
        from ..export.backends.job import verify_backend_file

        report = verify_backend_file(args.file, module=args.module, checkpoint=args.checkpoint, seconds=args.seconds,
                                     tolerance=None if args.tolerance == DEFAULT_TOLERANCE else args.tolerance)
        if not args.json:
            print(report.to_text())
        return 0, report.to_dict()
    report = verify_file(args.file, module=args.module, checkpoint=args.checkpoint, seconds=args.seconds,
                         tolerance=args.tolerance, optimization=args.optimization,
                         write_certificate=args.write_certificate)
    if not args.json:
        print(report.to_text())
    return 0, report.to_dict()
