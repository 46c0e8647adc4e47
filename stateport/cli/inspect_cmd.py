"""``stateport inspect``: the card of an exported file as readable tables."""

from __future__ import annotations

import os

from ..spec import ModelCard


def add_parser(sub):
    p = sub.add_parser("inspect", help="show the model card of an exported file")
    p.add_argument("file")
    return p


def _shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def render(card: ModelCard, path: str) -> str:
    lines = [f"{path}  ({os.path.getsize(path) / 1024:.1f} KiB)  model {card.name!r}", "", "ports"]
    lines.append(f"  {'name':<22} {'role':<7} {'shape':<22} {'dtype':<8} {'pair':<18} {'batch ax':>8} "
                 f"{'init':>5} {'reset@eos':>9}")
    for p in card.inputs:
        lines.append(f"  {p.name:<22} {'input':<7} {_shape(p.shape):<22} {p.dtype:<8}")
    for s in card.states:
        lines.append(f"  {s.name:<22} {'state':<7} {_shape(s.shape):<22} {s.dtype:<8} {'-> ' + s.output:<18} "
                     f"{s.batch_axis:>8} {s.init:>5g} {str(s.reset_on_end_of_speech).lower():>9}")
    for p in card.outputs:
        lines.append(f"  {p.name:<22} {'output':<7} {_shape(p.shape):<22} {p.dtype:<8}")
    st = card.streaming
    lines += ["", "streaming",
              f"  sample rate {st.sample_rate_hz} Hz, frame hop {st.frame_hop_samples} samples ({st.frame_hop_ms:g} ms)",
              f"  frames per step {st.frames_per_step or '1 (no time axis)'}, advanced {st.frames_advanced_per_step}, "
              f"multiple of {st.frame_multiple}, look-ahead {st.lookahead_frames}, subsampling {st.subsampling}",
              f"  {'static shapes' if st.static else 'dynamic batch and time'}; algorithmic latency "
              f"{st.algorithmic_latency_ms:g} ms; state {card.total_state_floats()} values per stream"]
    lines += ["", "frontend"]
    if card.frontend:
        lines.append("  " + ", ".join(f"{k}={v}" for k, v in card.frontend.items()))
    else:
        lines.append("  none declared (the input is already features)")
    o = card.output
    vocab = ", ".join(o.vocabulary[:12]) + (" …" if len(o.vocabulary) > 12 else "")
    lines += ["", "output", f"  {o.kind} on {o.port!r}; blank id {o.blank_id}; vocabulary ({len(o.vocabulary)}): {vocab}"]
    p = card.provenance
    lines += ["", "provenance",
              f"  stateport {p.stateport_version}, torch {p.torch_version}, exporter {p.exporter}, opset {p.opset}",
              f"  architecture {p.architecture}" + (f" ({p.size})" if p.size else "") + f", {p.parameters} parameters, "
              f"precision {p.precision}" + (f", quantization recipe {p.quantization.get('recipe')!r} (details: --json)"
                                            if p.quantization else ""),
              "  weights: " + (f"checkpoint sha256 {p.checkpoint_sha256}" if p.checkpoint_sha256 else
                                f"module {p.module}" if p.module else f"init seed {p.init_seed}")]
    c = card.certificate
    lines += ["", "parity certificate"]
    if not c:
        lines.append("  none: no parity proof is recorded for this file")
    elif c.get("skipped"):
        lines.append(f"  none: {c.get('reason', 'no parity proof ran')}")
    else:
        lines.append(f"  {'PASSED' if c['passed'] else 'FAILED'} on {c['backend']} "
                     f"(graph optimisation {c.get('ort_graph_optimization')}): {c['seconds']:g} s, {c['frames']} frames, "
                     f"max |diff| {c['max_abs_diff']:.2e} <= {c['tolerance']:g}" if c['max_abs_diff'] is not None
                     else f"  {'PASSED' if c['passed'] else 'FAILED'}")
        for row in c["compared"]:
            mad = "-" if row["max_abs_diff"] is None else f"{row['max_abs_diff']:.2e}"
            lines.append(f"    {'ok ' if row['passed'] else 'BAD'} {row['check']:<48} {mad:>9}  {row['detail']}")
    return "\n".join(lines)


def run(args):
    if args.file.rstrip("/").endswith(".onnx"):
        from ..runtime.model_file import read_card
    else:  # another backend's file (.tflite, .pte, .xml, .mlpackage): the card in its own slot
        from ..export.backends import read_backend_card as read_card
    card = read_card(args.file)
    if not args.json:
        print(render(card, args.file))
    return 0, card.to_dict()
