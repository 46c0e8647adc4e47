"""``stateport verify``: re-run the parity proof of an exported file (any backend) against its reference."""

from __future__ import annotations

from ..verify import DEFAULT_SECONDS
from .args import nonneg_float, positive_float


def add_parser(sub):
    p = sub.add_parser("verify", help="prove an exported model equals its torch reference, streaming and offline")
    p.add_argument("file", help="an exported file (.onnx, .tflite, .pte, OpenVINO .xml, .mlpackage), or the folder "
                                "of a multi-graph export")
    p.add_argument("--seconds", type=positive_float, default=DEFAULT_SECONDS,
                   help="input length (default 60 s, at least 1 s)")
    p.add_argument("--tolerance", type=nonneg_float, default=None,
                   help="max |diff| allowed (default: the file's own: 1e-4, or its quantization's bound)")
    p.add_argument("--module", help="FILE.py:OBJ, for models exported from --module")
    p.add_argument("--checkpoint", help="the checkpoint the model was exported from, if any")
    p.add_argument("--optimization", default=None, choices=["disable", "basic", "extended", "all"],
                   help="ONNX Runtime graph optimisation level to verify at (default: the certificate's)")
    p.add_argument("--write-certificate", action="store_true",
                   help="store the new certificate in the file (proved on a copy that then replaces it)")
    return p


def run(args):
    from .. import progress
    from ..export import verify_file

    with progress.task(f"rebuild the reference of {args.file} and prove parity over {args.seconds:g} s"):
        report = verify_file(args.file, module=args.module, checkpoint=args.checkpoint, seconds=args.seconds,
                             tolerance=args.tolerance, optimization=args.optimization,
                             write_certificate=args.write_certificate)
    if not args.json:
        print(report.to_text())
    return 0, report.to_dict()
