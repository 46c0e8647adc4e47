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
    p.add_argument("-o", "--out",
                   help="output file (.onnx, or the backend's suffix); a folder for multi-graph architectures such "
                        "as rnnt. Written only once proved; a failed proof is kept as OUT.failed.onnx "
                        "(default with --web: DIR/model.onnx)")
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
    p.add_argument("--audio-input", action="store_true",
                   help="put the card's frontend inside the graph: the model takes PCM samples (float32 in [-1, 1] at the "
                        "card's rate, any number per call) and carries what the frontend keeps as state ports")
    p.add_argument("--web", metavar="DIR",
                   help="also write a live-microphone page for the model into DIR (implies --audio-input; needs "
                        "`npm ci` in clients/web); serve it with `python -m http.server -d DIR`")
    p.add_argument("--tail-from", metavar="FILE",
                   help="carry the measured end-of-input tail (streaming.tail_padding_ms) from a stateport file of the "
                        "same checkpoint (default: the built-in model's, for its checkpoint)")
    p.add_argument("--coreml-state", action="store_true",
                   help="coreml: keep the state in Core ML states (ct.StateType, fp16, iOS 18+) instead of I/O ports")
    return p


def run(args):
    import os

    from .. import progress
    from ..errors import InvalidInputError
    from ..export import export_model

    if args.web:
        from ..export.web import client_sources

        if args.backend != "onnx":
            raise InvalidInputError("--web runs the model with ONNX Runtime Web: it needs --backend onnx")
        client_sources()  # before the export: say now if `npm ci` has not run
        os.makedirs(args.web, exist_ok=True)  # the page's own folder (-o's folder must exist, as always)
    out = args.out if args.out is not None else (os.path.join(args.web, "model.onnx") if args.web else None)
    if out is None:
        raise InvalidInputError("give the output path with -o/--out (or --web DIR)")
    what = args.arch + (f" ({args.size})" if args.size else "") if args.arch else args.module
    proof = "without the parity proof" if args.no_verify else f"and prove parity over {args.seconds:g} s"
    with progress.task(f"export {what} to {args.backend} {proof}"):
        result = export_model(out, arch=args.arch, size=args.size, module=args.module, checkpoint=args.checkpoint,
                              chunk_frames=args.chunk_frames, static=args.static, verify=not args.no_verify,
                              seconds=args.seconds, tolerance=args.tolerance, exporter=args.exporter,
                              seed=args.seed, backend=args.backend, quantize=args.quantize,
                              backend_options={"state": "coreml"} if args.coreml_state else None,
                              audio_input=args.audio_input or bool(args.web), tail_from=args.tail_from)
    web = None
    if args.web:
        from ..export.web import write_web_page

        web = write_web_page(args.web, out)
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
        if web:
            print(f"wrote the page into {web['dir']} ({', '.join(web['files'])}); serve it with: "
                  f"python -m http.server -d {web['dir']}  and open http://localhost:8000/")
    return 0, {**result.to_dict(), **({"web": web} if web else {})}
