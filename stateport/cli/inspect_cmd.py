"""``stateport inspect``: the card of an exported file as readable tables."""

from __future__ import annotations

import os

from ..runtime.features import receptive_field_tail_ms
from ..spec import ModelCard


def add_parser(sub):
    p = sub.add_parser("inspect", help="show the model card of an exported file")
    p.add_argument("file")
    return p


def _shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def _tail(card: ModelCard) -> str:
    st = card.streaming
    if st.tail_padding_ms is None:
        return (f"no tail_padding_ms declared (clients flush the receptive field, "
                f"{receptive_field_tail_ms(card):g} ms, which a trained model's emission delay may exceed)")
    return f"{st.tail_padding_ms:g} ms of silence flushed ({st.tail_padding_basis or 'basis not stated'})"


def _state_notes(card: ModelCard) -> list[str]:
    """What a client must know beyond the table: side inputs, batch-uniform and growing states, constants."""
    notes = []
    for p in card.inputs:
        if p.side_role == "chunk_length":
            notes.append(f"  {p.name}: the client feeds the number of frames in each step's chunk")
        elif p.side_role == "stream_offset":
            notes.append(f"  {p.name}: the client feeds the frames advanced before each step (0 at a stream's start)")
    for s in card.states:
        if s.batch_uniform:
            notes.append(f"  {s.name}: one value for the whole batch; streams batch together only while theirs agree")
        if s.valid_length_state:
            notes.append(f"  {s.name}: fixed-size buffer growing along axis {s.grow_axis}; "
                         f"its valid length is {s.valid_length_state}")
    if card.constants:
        notes.append("  bound at export (the graph holds only for these): "
                     + ", ".join(f"{k}={v!r}" for k, v in card.constants.items()))
    return notes


def check_file(path: str, card: ModelCard) -> dict:
    """The trust-on-load verdict on an ONNX file: does its card match its graph, and its certificate.

    What ``Recognizer``/``OnnxStepSession`` would refuse, reported instead of raised.
    """
    from ..runtime.session import make_ort_session
    from ..runtime.trust import card_graph_disagreements, certificate_status, graph_ports

    problems = card_graph_disagreements(card, graph_ports(make_ort_session(path, optimization="disable")))
    return {"card_matches_graph": not problems, "disagreements": problems, "certificate": certificate_status(card)}


def render(card: ModelCard, path: str, trust: dict | None = None) -> str:
    size = os.path.getsize(path) if os.path.isfile(path) else sum(
        os.path.getsize(os.path.join(path, f)) for f in os.listdir(path))
    lines = [f"{path}  ({size / 1024:.1f} KiB)  model {card.name!r}", "", "ports"]
    lines.append(f"  {'name':<22} {'role':<7} {'shape':<22} {'dtype':<8} {'pair':<18} {'batch ax':>8} "
                 f"{'init':>5} {'reset@eos':>9}")
    for p in card.inputs:
        side = f"side: {p.side_role}" if p.side_role else ""
        lines.append(f"  {p.name:<22} {'input':<7} {_shape(p.shape):<22} {p.dtype:<8} {side}".rstrip())
    for s in card.states:
        lines.append(f"  {s.name:<22} {'state':<7} {_shape(s.shape):<22} {s.dtype:<8} {'-> ' + s.output:<18} "
                     f"{s.batch_axis:>8} {s.init:>5g} {str(s.reset_on_end_of_speech).lower():>9}")
    lines += _state_notes(card)
    for p in card.outputs:
        lines.append(f"  {p.name:<22} {'output':<7} {_shape(p.shape):<22} {p.dtype:<8}")
    st = card.streaming
    lines += ["", "streaming",
              f"  sample rate {st.sample_rate_hz} Hz, frame hop {st.frame_hop_samples} samples ({st.frame_hop_ms:g} ms)",
              f"  frames per step {st.frames_per_step or '1 (no time axis)'}, advanced {st.frames_advanced_per_step}, "
              f"multiple of {st.frame_multiple}, look-ahead {st.lookahead_frames}, subsampling {st.subsampling}"
              + (", chunk-exact (every step but the last advances exactly that much)" if st.chunk_exact else ""),
              f"  {'static shapes' if st.static else 'dynamic batch and time'}; algorithmic latency "
              f"{st.algorithmic_latency_ms:g} ms; state {card.total_state_floats()} values per stream",
              "  end of input: " + _tail(card)]
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
    if trust is not None:
        lines += ["", "card vs graph"]
        if trust["card_matches_graph"]:
            lines.append("  agree: every port, role, shape, dtype and state pair of the card is the graph's")
        else:
            lines.append(f"  DISAGREE ({len(trust['disagreements'])}): the card does not describe this graph; "
                         "stream and the runtime refuse it")
            lines += [f"    {d}" for d in trust["disagreements"]]
    c = card.certificate
    lines += ["", "parity certificate"]
    if trust is not None and not trust["card_matches_graph"]:
        lines.append("  not valid for this graph (the card contradicts the graph; re-export or run "
                     "`stateport verify`)" + (f"; the card claims {'PASSED' if c.get('passed') else 'FAILED'}" if c
                                              else ""))
    elif not c:
        lines.append("  none: stream and the runtime refuse it without --allow-uncertified / allow_uncertified=True")
    elif c.get("skipped"):
        lines.append(f"  none: {c.get('reason', 'no parity proof ran')}; stream and the runtime refuse it without "
                     "--allow-uncertified / allow_uncertified=True")
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
    import sys

    from ..errors import CardGraphMismatchError

    path = args.file
    graphs = [os.path.join(path, f"{g}.onnx") for g in ("encoder", "predictor", "joiner")]
    if os.path.isdir(path) and all(os.path.isfile(g) for g in graphs):
        files = graphs  # a transducer export: each graph has its own card and certificate
    else:
        files = [path]
    docs, mismatched = [], []
    for file in files:
        if file.rstrip("/").endswith(".onnx"):
            from ..runtime.model_file import read_card

            card = read_card(file)
            trust = check_file(file, card)
        else:  # another backend's file (.tflite, .pte, .xml, .mlpackage): the card in its own slot
            from ..export.backends import read_backend_card

            card, trust = read_backend_card(file), None  # its graph is checked by that backend's runtime
        if trust is not None and not trust["card_matches_graph"]:
            mismatched.append((file, trust["disagreements"]))
        if not args.json:
            print(render(card, file, trust) + ("\n" if len(files) > 1 else ""))
        docs.append(card.to_dict() | ({"trust": trust} if trust is not None else {}))
    doc = docs[0] if len(docs) == 1 else {"graphs": dict(zip(("encoder", "predictor", "joiner"), docs))}
    if mismatched:
        file, problems = mismatched[0]
        error = CardGraphMismatchError(f"the card of {file!r} contradicts its graph: {'; '.join(problems[:3])}"
                                       + (f"; and {len(problems) - 3} more" if len(problems) > 3 else ""))
        print(f"error[{error.code}]: {error.message}", file=sys.stderr)
        return error.exit_code, doc
    return 0, doc
