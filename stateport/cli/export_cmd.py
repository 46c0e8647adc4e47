"""``stateport export``: build, export with explicit state ports, prove parity, certify."""

from __future__ import annotations

from ..verify import DEFAULT_SECONDS
from .args import nonneg_float, nonneg_int, positive_float, positive_int


def add_parser(sub):
    from ..export.backends import backend_names  # the registry: no torch import

    p = sub.add_parser("export", help="export a streaming model to ONNX with explicit state ports and a card")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--arch", help="a built-in architecture (see `stateport list`)")
    src.add_argument("--module", help="FILE.py:OBJ naming a StreamingModule (or a function returning one)")
    p.add_argument("--size", help="size of a built-in architecture (tiny, default, ...)")
    p.add_argument("--checkpoint", help="weights to load (a state_dict, or a dict with 'state_dict')")
    p.add_argument("-o", "--out", required=True,
                   help="output file (.onnx, or the backend's suffix); a folder for multi-graph architectures such "
                        "as rnnt. Written only once proved; a failed proof is kept as OUT.failed.onnx")
    p.add_argument("--chunk-frames", type=positive_int, help="nominal frames per step (default: the model's)")
    p.add_argument("--static", action="store_true", help="fix every shape (batch 1, one chunk) for NPU/DSP compilers")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the parity proof (the card says so; runtimes then refuse it unless allowed)")
    p.add_argument("--seconds", type=positive_float, default=DEFAULT_SECONDS,
                   help="input length of the parity proof (at least 1 s)")
    p.add_argument("--tolerance", type=nonneg_float, default=None,
                   help="max |diff| allowed, relative above magnitude 1 (default 1e-4; 0.25 with --quantize)")
    p.add_argument("--exporter", default="torchscript", choices=["torchscript", "dynamo"],
                   help="torch exporter (dynamo freezes LSTM time axes on torch 2.13: for diagnosis)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="init seed of a built-in architecture without checkpoint")
    p.add_argument("--backend", "--format", dest="backend", default="onnx", choices=backend_names(),
                   help="output format: .onnx, .tflite, .mlpackage, .pte, or OpenVINO .xml (each needs its extra, "
                        "e.g. pip install 'stateport[tflite]'), or sherpa-onnx (a folder sherpa-onnx's online "
                        "recognizer loads: encoder/decoder/joiner .onnx + tokens.txt)")
    p.add_argument("--quantize", choices=["dynamic-int8"],
                   help="tflite only: int8 weights, float activations (proven against the float model at 0.25 "
                        "unless --tolerance says otherwise); for ONNX use `stateport quantize`")
    p.add_argument("--coreml-state", action="store_true",
                   help="coreml: keep the state in Core ML states (ct.StateType, fp16, iOS 18+) instead of I/O ports")
    return p


def run(args):
    from .. import progress
    from ..export import export_model

    what = args.arch + (f" ({args.size})" if args.size else "") if args.arch else args.module
    proof = "without the parity proof" if args.no_verify else f"and prove parity over {args.seconds:g} s"
    with progress.task(f"export {what} to {args.backend} {proof}"):
        result = export_model(args.out, arch=args.arch, size=args.size, module=args.module, checkpoint=args.checkpoint,
                              chunk_frames=args.chunk_frames, static=args.static, verify=not args.no_verify,
                              seconds=args.seconds, tolerance=args.tolerance, exporter=args.exporter,
                              seed=args.seed, backend=args.backend, quantize=args.quantize,
                              backend_options={"state": "coreml"} if args.coreml_state else None)
    if not args.json:
        # A multi-graph architecture (a transducer) writes one file per graph into a folder.
        for one in (result.graphs or {"": result}).values():
            card = one.card
            print(f"wrote {one.path}: {', '.join(card.input_names)} -> {', '.join(card.output_names)}")
            if one.report:
                print(one.report.to_text())
            else:
                print("parity proof skipped (--no-verify): the card says no proof ran")
        if not result.report:  # otherwise the report's notes already say what the backend changed
            for note in result.notes:
                print(f"note: {note}")
    return 0, result.to_dict()
