"""SNPE / QNN readiness of a stateport ONNX file, checked without the Qualcomm SDK.

What is checked (each a :class:`Finding`; ``error`` means the conversion will fail or the
state would be lost, ``warning`` that it may, ``info`` what to know):

- static shapes: every graph input and output has fixed dims (the converters take one
  ``--input_dim`` per input; ``snpe-dlc-quantize`` needs batch 1);
- opset: the model's ``ai.onnx`` opset against the newest the converter handles;
- operators: each node's op and its operator version (the newest schema revision at the model's
  opset) against the documented allow-list, plus the documented constraints we can test from
  the graph (LSTM/GRU/RNN attributes, Gemm transposes, custom domains);
- state defaults: state inputs that also have an initializer (stateport gives each state its
  initial value that way, for ONNX Runtime's offline mode). A converter may fold them into
  constants: OpenVINO does (measured), and the Qualcomm converters' handling is not documented,
  so this is flagged and :func:`write_without_state_defaults` writes a copy without them;
- int64 inputs (the Qualcomm runtimes feed float32/int32/uint8 buffers).

What is not checked: the conversion itself, per-backend (CPU/GPU/HTP) op support, quantization
encodings, and numerical parity on device. Those need the SDK (the printed commands) and a device.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from importlib import resources

from ..errors import InvalidInputError, MissingCardError
from ..spec import CARD_KEY, ModelCard

TARGETS = ("snpe", "qnn")
_DATA = "qualcomm_onnx_ops.json"
_RECURRENT = ("LSTM", "GRU", "RNN")


@dataclass
class Finding:
    level: str  # "error", "warning" or "info"
    code: str
    message: str


@dataclass
class ReadinessReport:
    """The result of :func:`check_qualcomm`: findings, conversion commands, and what was (not) checked."""

    target: str
    path: str
    findings: list = field(default_factory=list)
    commands: list = field(default_factory=list)
    ops: dict = field(default_factory=dict)
    checked: list = field(default_factory=list)
    not_checked: list = field(default_factory=list)
    allow_list: dict = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    def add(self, level: str, code: str, message: str) -> None:
        self.findings.append(Finding(level, code, message))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ready"] = self.ready
        return d

    def to_text(self) -> str:
        lines = [f"{self.target} readiness of {self.path}: {'READY' if self.ready else 'NOT READY'} "
                 f"(as far as can be checked without the SDK)"]
        for level in ("error", "warning", "info"):
            for f in (f for f in self.findings if f.level == level):
                lines.append(f"  {level:<7} [{f.code}] {f.message}")
        lines.append("  ops: " + ", ".join(f"{op} x{n}" for op, n in sorted(self.ops.items())))
        src = self.allow_list
        lines.append(f"  allow-list: {src.get('document')} ({src.get('doc_id')}), compiled {src.get('compiled_utc')}")
        lines.append("  checked: " + "; ".join(self.checked))
        lines.append("  NOT checked (needs the SDK or a device): " + "; ".join(self.not_checked))
        lines.append("")
        lines.append("conversion commands (run with the Qualcomm SDK's environment set up):")
        lines.extend(self.commands)
        return "\n".join(lines)


def load_allow_list() -> dict:
    """The documented allow-list (``data/qualcomm_onnx_ops.json``): ops, versions, notes, source and date."""
    text = resources.files(__package__).joinpath("data", _DATA).read_text(encoding="utf-8")
    return json.loads(text)


def _dims(value_info) -> list:
    """A graph value's dims: ints, or the symbolic name (or "?") of each dynamic dim."""
    shape = value_info.type.tensor_type.shape
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in shape.dim]


def _elem_type(value_info) -> str:
    import onnx

    return onnx.helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type).name


def _op_version(op_type: str, domain: str, opset: int) -> int | None:
    """The operator version a node of ``op_type`` has in a model of ``opset`` (its schema's since_version)."""
    import onnx

    try:
        return onnx.defs.get_schema(op_type, opset, domain).since_version
    except onnx.defs.SchemaError:
        return None


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _check_recurrent(node, report: ReadinessReport) -> None:
    """The documented limits of LSTM/GRU/RNN: default activations, no clip, no input_forget, layout 0."""
    a = _attrs(node)
    problems = []
    if a.get("activations"):
        acts = [x.decode() if isinstance(x, bytes) else x for x in a["activations"]]
        defaults = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}[node.op_type]
        if acts[: len(defaults)] != defaults:
            problems.append(f"custom activations {acts}")
    for key in ("activation_alpha", "activation_beta", "clip"):
        if key in a:
            problems.append(f"attribute {key}")
    if a.get("input_forget", 0):
        problems.append("input_forget=1")
    if a.get("layout", 0):
        problems.append(f"layout={a['layout']} (only 0 is supported)")
    if problems:
        report.add("error", "RECURRENT_ATTRIBUTES", f"{node.op_type} node {node.name!r}: {', '.join(problems)} "
                                                    "(not supported by the converter, per the allow-list notes)")
    direction = a.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    if direction != "forward":
        report.add("warning", "RECURRENT_DIRECTION", f"{node.op_type} node {node.name!r}: direction {direction!r}; "
                                                     "a streaming model's recurrence should be forward")


def _dim_arg(dims: list) -> str:
    return ",".join(str(d) for d in dims)


def conversion_commands(target: str, onnx_path: str, inputs: list, outputs: list, *, has_lstm: bool) -> list:
    """The vendor conversion commands with one ``--input_dim`` per input (``inputs``: [(name, dims)])."""
    base = os.path.splitext(os.path.basename(onnx_path))[0]
    dim_args = [f"  --input_dim {name} {_dim_arg(dims)} \\" for name, dims in inputs]
    out_args = [f"  --out_node {name} \\" for name in outputs]
    if target == "snpe":
        lines = ["snpe-onnx-to-dlc \\", f"  --input_network {onnx_path} \\", *dim_args, *out_args,
                 f"  --output_path {base}.dlc"]
        if has_lstm:
            lines.append("# if a runtime rejects the LSTM op, the SDK's --expand_lstm_op_structure option "
                         "(see snpe-onnx-to-dlc --help) converts it into its elementwise structure")
        lines.append("# quantised DLC: snpe-dlc-quantize --input_dlc " + base + ".dlc --input_list inputs.txt "
                     "(calibration inputs must carry realistic state values: record them with the state loop)")
        return lines
    lines = ["qnn-onnx-converter \\", f"  --input_network {onnx_path} \\", *dim_args, *out_args,
             f"  --output_path {base}.cpp",
             f"qnn-model-lib-generator -c {base}.cpp -b {base}.bin -o {base}_libs"]
    return lines


def write_without_state_defaults(path: str | os.PathLike, out: str | os.PathLike) -> list:
    """Write a copy of the ONNX file without the initializers that shadow graph inputs; returns their names.

    The copy's card keeps the source's certificate only as history: the proof ran on the graph
    with the defaults, so the copy's certificate says it was not proved itself. Converters drop
    metadata, so the card is also written beside it as ``<out>.card.json``. Both files atomically.
    """
    import onnx

    from ..atomic import atomic_output, atomic_write_text
    from ..runtime.model_file import write_card
    from ..verify.report import unproven_certificate
    from ..verify.state_defaults import strip_state_defaults

    proto = onnx.load(os.fspath(path))
    removed = [t.name for t in strip_state_defaults(proto)]
    card = None
    meta = {p.key: p.value for p in proto.metadata_props}
    if CARD_KEY in meta:
        card = ModelCard.from_json(meta[CARD_KEY])
        source = card.certificate
        card.certificate = unproven_certificate(
            f"a copy of {os.path.basename(os.fspath(path))} without the state defaults (every state a required "
            "input), written by stateport check --fix-out; the source's certificate, which this copy was not "
            "proved under, is under 'source_certificate'")
        card.certificate["source_certificate"] = source
        write_card(proto, card)
    with atomic_output(out) as target:
        onnx.save(proto, target.tmp)
        target.commit()
    if card is not None:
        atomic_write_text(os.fspath(out) + ".card.json", card.to_json())
    return removed


def _concrete(dims: list, card: ModelCard | None) -> list:
    """Dims for ``--input_dim``: a symbolic batch becomes 1, a symbolic time axis the card's nominal chunk."""
    chunk = card.streaming.frames_per_step if card is not None and card.streaming.frames_per_step else None
    out = []
    for d in dims:
        if isinstance(d, int) and d > 0:
            out.append(d)
        elif d == "batch":
            out.append(1)
        elif chunk is not None:
            out.append(chunk)
        else:
            out.append(d)
    return out


def check_qualcomm(path: str | os.PathLike, target: str = "snpe", *, fix_out: str | os.PathLike | None = None
                   ) -> ReadinessReport:
    """Check a stateport ``.onnx`` file for SNPE (``snpe-onnx-to-dlc``) or QNN (``qnn-onnx-converter``).

    ``fix_out``: also write a copy without the state defaults (:func:`write_without_state_defaults`) and
    print the commands for that copy.
    """
    from ..runtime.model_file import card_from_metadata, load_onnx_model

    if target not in TARGETS:
        raise InvalidInputError(f"target {target!r}: expected one of {', '.join(TARGETS)}")
    path = os.fspath(path)
    if not path.endswith(".onnx"):
        raise InvalidInputError(f"{path!r}: the Qualcomm converters take the .onnx export "
                                "(stateport export --backend onnx --static)")
    if fix_out is not None:
        from ..atomic import check_output_path

        check_output_path(fix_out)  # before any work
    proto = load_onnx_model(path)
    allow = load_allow_list()
    report = ReadinessReport(target=target, path=path,
                             allow_list={**allow["source"], "compiled_utc": allow["compiled_utc"],
                                         "applies_to": allow["applies_to"][target]})
    card: ModelCard | None = None
    try:
        card = card_from_metadata({p.key: p.value for p in proto.metadata_props}, repr(path))
    except MissingCardError as e:
        report.add("warning", "NO_CARD", e.message)

    graph = proto.graph
    initializer_names = {t.name for t in graph.initializer}
    graph_inputs = list(graph.input)
    graph_outputs = list(graph.output)

    # -- static shapes ---------------------------------------------------------------------
    dynamic = [f"{v.name} {_dims(v)}" for v in graph_inputs + graph_outputs
               if any(not isinstance(d, int) or d <= 0 for d in _dims(v))]
    if dynamic:
        report.add("error", "DYNAMIC_SHAPES", "dynamic dims on " + "; ".join(dynamic) + ": re-export with "
                   "`stateport export ... --static` (batch 1, one chunk per step)")
    if card is not None and not card.streaming.static and not dynamic:
        report.add("info", "CARD_NOT_STATIC", "the card does not say static, though every graph dim is fixed")

    # -- opset and operators ---------------------------------------------------------------
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=None)
    if opset is None:
        report.add("error", "NO_OPSET", "the model imports no ai.onnx opset")
        opset = 0
    elif opset > allow["max_opset"]:
        report.add("error", "OPSET_TOO_NEW", f"opset {opset} is newer than the converter's newest "
                   f"({allow['max_opset']}): re-export with an older opset (stateport's default is 17)")
    supported = allow["ops"]
    extensions = allow.get("newer_release_extensions", {}).get("opset_versions", {})
    counts: dict = {}
    has_lstm = False
    for node in graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
        if node.domain not in ("", "ai.onnx"):
            report.add("error", "CUSTOM_DOMAIN", f"node {node.name!r}: op {node.domain}::{node.op_type} is not an "
                       "ONNX standard op (needs a user-defined op package)")
            continue
        entry = supported.get(node.op_type)
        if entry is None:
            report.add("error", "OP_NOT_LISTED", f"op {node.op_type} (node {node.name!r}) is not in the documented "
                       "list of supported ONNX ops")
            continue
        version = _op_version(node.op_type, "", opset)
        if version is not None and version not in entry["opset_versions"]:
            level = "warning" if version in extensions.get(node.op_type, []) else "error"
            report.add(level, "OP_VERSION", f"op {node.op_type} is version {version} at opset {opset}; the list "
                       f"documents versions {entry['opset_versions']}"
                       + (" (a newer release lists it)" if level == "warning" else ""))
        if node.op_type in _RECURRENT:
            has_lstm = has_lstm or node.op_type == "LSTM"
            _check_recurrent(node, report)
        if node.op_type == "Gemm":
            a = _attrs(node)
            if a.get("transA", 0) != 0 or a.get("transB", 0) != 1:
                report.add("error", "GEMM_FORM", f"Gemm node {node.name!r} (transA={a.get('transA', 0)}, "
                           f"transB={a.get('transB', 0)}): only the FC form transA=0, transB=1 is supported")
    report.ops = counts
    # Constant's note (sparse tensors) never applies to an exported torch graph; Gemm and RNNs are tested above.
    noted = sorted({op for op in counts if "note" in supported.get(op, {})} - {"Constant", "Gemm", *_RECURRENT})
    for op in noted:
        report.add("info", "OP_NOTE", f"{op}: {supported[op]['note']}")
    if has_lstm:
        report.add("info", "LSTM", "LSTM nodes take their initial h/c from the state input ports and return the last "
                   "h/c as state outputs; their attributes are within the documented limits unless flagged above")

    # -- state ports -----------------------------------------------------------------------
    shadowed = [v.name for v in graph_inputs if v.name in initializer_names]
    convert_path = path
    if fix_out is not None:
        removed = write_without_state_defaults(path, fix_out)
        convert_path = os.fspath(fix_out)
        report.add("info", "FIXED_COPY", f"wrote {convert_path} without the initializers of "
                   f"{', '.join(removed) or 'no input'} (every state is a required input there)")
    elif shadowed:
        report.add("warning", "STATE_DEFAULTS", f"inputs {', '.join(shadowed)} also have initializers (their "
                   "initial values); a converter may fold them into constants and lose the state (OpenVINO does, "
                   "measured). Convert a copy without them: stateport check FILE --target "
                   f"{target} --fix-out FIXED.onnx")
    wide_ports = [v.name for v in graph_inputs + graph_outputs if _elem_type(v) == "float64"]
    if wide_ports:
        # Not in the documented op list either way; what we know is why the ports are float64.
        report.add("warning", "FLOAT64_PORTS", f"float64 ports {', '.join(wide_ports)}: Qualcomm's DSP/HTP "
                   "backends compute in fixed point or float16/32, and a converter that narrows these to "
                   "float32 loses the exactness they exist for (stateport's online mean normalisation keeps "
                   "its running sums in float64 so streaming equals offline). For such a target, train "
                   "without --online-cmn-frames, or prove the converted model on the device")
    int64_inputs = [v.name for v in graph_inputs if _elem_type(v) == "int64"]
    if int64_inputs:
        report.add("warning", "INT64_INPUT", f"int64 inputs {', '.join(int64_inputs)}: the runtimes feed 32-bit "
                   "buffers; check the converter's --input_dtype handling")
    if card is not None:
        names = {v.name for v in graph_inputs} | {v.name for v in graph_outputs}
        missing = [n for n in card.input_names + card.output_names if n not in names]
        if missing:
            report.add("error", "CARD_PORTS", f"card ports missing from the graph: {', '.join(missing)}")
        report.add("info", "CARD", "the DLC/QNN model carries no stateport card: ship the card JSON beside it "
                   "(--fix-out writes FIXED.onnx.card.json)")

    in_dims = [(v.name, _concrete(_dims(v), card)) for v in graph_inputs
               if v.name not in initializer_names or v.name in shadowed]
    out_names = [v.name for v in graph_outputs]
    report.commands = conversion_commands(target, convert_path, in_dims, out_names, has_lstm=has_lstm)
    report.checked = ["static shapes of every input/output", f"opset <= {allow['max_opset']}",
                      "each op and its version against the documented list",
                      "LSTM/GRU/RNN attributes and Gemm form against the documented notes",
                      "state inputs shadowed by initializers", "int64 inputs", "float64 ports", "card ports present in the graph"]
    report.not_checked = ["running the converter", "per-backend (CPU/GPU/HTP) op support and constraints",
                          "quantization and its calibration", "numerical parity on the device"]
    return report
