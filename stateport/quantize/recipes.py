"""Named quantization recipes: one typed config per method, with presets, never free-form dicts.

A recipe says *what* to do to an fp32 stateport model and *how strictly its result is proved*:

- ``dynamic-int8``: ONNX Runtime ``quantize_dynamic``: int8 weights, activations quantized at run
  time with a scale computed from each call's own tensor (LSTM -> ``DynamicQuantizeLSTM``,
  MatMul -> ``MatMulInteger``). Because the scale depends on what one call sees, a chunk and the
  whole utterance are quantized differently: streaming != offline *by construction*. The proof
  measures by how much and holds the recipe to ``stream_tolerance`` (not 1e-4).
- ``static-int8``: QDQ with ranges calibrated by running the real streaming state loop over real
  audio; fixed scales, so the quantized graph streams exactly like it runs offline.
- ``fp16``: float16 weights and compute, float32 I/O (clients keep feeding float32 features and
  state; the card's ports stay float32).
- ``qat-int8``: quantization-aware fine-tuning from the float weights with the caller's training
  step (:class:`stateport.quantize.qat.QatTask`), exported as QDQ.

Recipes say nothing about data: calibration audio and the QAT training step are inputs of
:func:`stateport.quantize.quantize_model` (``calib=``, ``qat=``).

``stream_tolerance`` is the bound of "the quantized graph streamed == the same graph offline"
(logits and states); ``reference_tolerance`` bounds an artifact against its own reference where
it has one that computes the same arithmetic (QAT: the torch fake-quant model). Both are applied
by the parity proof's rule ``|diff| <= tolerance * max(1, |reference|)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from ..errors import InvalidInputError

CALIBRATION_METHODS = ("minmax", "percentile", "entropy")

# A QDQ graph with fixed scales streams like it runs offline *up to rounding flips*: ONNX Runtime's
# float kernels are not bit-identical across chunk lengths (a 1-frame GEMV vs a 16-frame GEMM in the
# LSTM's input projection differ by ~1e-7), and a quantizer downstream turns such a difference at a
# rounding boundary into one quantum. Measured: 0.0 on the 1-layer tiny lstm-ctc, 2.4e-4 (one head-input
# quantum, one frame in 500, 1-frame chunks) on the 2x192 model after QAT. A few quanta, not 1e-4.
INT8_STREAM_TOLERANCE = 1e-2
ORT_LEVELS = ("disable", "basic", "extended", "all")


@dataclass(frozen=True)
class CalibrationConfig:
    """How the caller's calibration items are streamed through the fp32 model's state loop.

    utterances: at most this many items (recordings, waveforms or feature arrays) are used.
    utterances_per_stream: how many items one stream carries its state across before a reset
        (clients reset at end of speech; a long stream shows the state's long-run range).
    max_steps: cap on calibration feeds (model steps) in total.
    """

    utterances: int = 32
    utterances_per_stream: int = 4
    max_steps: int = 4000

    def __post_init__(self):
        if self.utterances < 1 or self.utterances_per_stream < 1 or self.max_steps < 1:
            raise InvalidInputError("calibration needs utterances >= 1, utterances_per_stream >= 1, max_steps >= 1")


CONV_MODES = ("weight-only", "integer", "float")


@dataclass(frozen=True)
class DynamicInt8Config:
    """``quantize_dynamic``: weights int8 (per-channel optional), activation scales per call.

    op_types: computed in int8 with per-call activation scales (LSTM -> DynamicQuantizeLSTM,
        MatMul/Gemm -> MatMulInteger / DynamicQuantizeMatMul).
    conv: what happens to convolutions, ONNX Runtime's only dynamic conv kernel being ConvInteger:
        ``weight-only`` (default): int8 weights (symmetric, per output channel) behind a
        DequantizeLinear, the conv computed in float (:func:`~.onnx_graph.int8_weights`);
        ``integer``: ConvInteger with uint8 activations quantized per call;
        ``float``: left as they are.
        Measured on the built-in model (20 convolutions, 74 % of an fp32 step; one thread,
        onnxruntime 1.32, AMD EPYC with AVX-512 VNNI): ``integer`` runs its step 2.8x *slower*
        than fp32 (ConvInteger alone 10.0 ms of an 11.8 ms step against 2.3 ms for the float
        convs: im2col and an unpacked u8 GEMM per call) and costs 6.6 WER points on the held-out
        speaker's trimmed digits (37.8 % against 31.2 %: one activation scale per call for the
        whole window batch); ``weight-only`` keeps fp32's accuracy and speed (the
        DequantizeLinear of the weights, ~4 % of a step) at 28 % of its size. So the dynamic
        recipe makes the file small but cannot make this model faster: static-int8 or qat-int8 do.
    """

    name: str = "dynamic-int8"
    per_channel: bool = False
    reduce_range: bool = False
    op_types: tuple = ("LSTM", "GRU", "MatMul", "Gemm")
    conv: str = "weight-only"
    # Measured on lstm-ctc (tiny, random and trained): streamed vs offline logits differ ~1e-2
    # because each chunk gets its own activation scale; this bound is the recipe's contract.
    stream_tolerance: float = 0.5
    ort_optimization: str = "all"

    def __post_init__(self):
        if self.conv not in CONV_MODES:
            raise InvalidInputError(f"conv {self.conv!r}: expected one of {CONV_MODES}")


@dataclass(frozen=True)
class StaticInt8Config:
    """QDQ static quantization with state-loop calibration.

    per_channel: per-output-channel weight scales (better accuracy, same size).
    activation_symmetric: signed int8 symmetric activations (some NPUs want it) vs asymmetric.
    method: how activation ranges are set from the calibration run (ONNX Runtime's calibrators;
        ``percentile`` is its histogram at the 99.999th percentile of |x|).
    float_input_layer: keep the first layer on the feature path (the first Conv/MatMul/Gemm the
        features reach) in float. For a model whose first layer reads *normalised* features:
        their range follows the speaker's channel and level, so ranges calibrated on the training
        speakers can clip an unseen speaker. Measured on the previous built-in model (lstm-ctc
        whose stacking convolution read online-mean-normalised features; george, 60 strings,
        calibrated on its four training speakers): quantised, 16.67 % WER (min/max) and 15.93 %
        (percentile) against 8.89 % for fp32; kept float, 8.52 %. The current built-in model's
        first convolution reads floored log-mel, whose range the floor and full scale fix:
        quantised it costs nothing (george's trimmed digits 30.0 % against 30.8 % kept float,
        composed strings 2.96 % against 2.59 %, fp32 31.2 % and 3.33 %: one digit apart) and the
        step is faster with the whole embedding on int8 kernels (model alone 3.03x fp32's
        speed against 2.36x kept float, same run: the float conv adds a layout reorder and a
        QuantizeLinear per step), for the same size (its 216 weights). ``None`` (the default)
        decides from the graph: float where the first layer's input passes through a
        normaliser carried in state (an online mean, ``online_cmn_frames``), int8 otherwise.
    op_types: what ONNX Runtime's quantizer puts Q/DQ around. Conv/MatMul/Gemm become QLinearConv /
        QLinearMatMul; the activations and pools between convolutions are listed too so that
        the int8 tensor flows on: LeakyRelu -> QLinearLeakyRelu, MaxPool on int8, Relu/Clip
        folded into the quantizer's range (ONNX Runtime's "removable activations"). Measured on
        the built-in model: with only Conv/MatMul/Gemm, 8 of its 19 conv blocks ran
        DequantizeLinear -> LeakyRelu -> Clip -> QuantizeLinear in float between the int8
        convs (0.39 of 1.64 ms per step).
    quantize_lstm: QDQ the LSTM's weights (int8, per gate row) and its input X; ONNX Runtime's
        QDQ quantizer has no LSTM handler, so without this the LSTM (most of the weights) stays
        fp32. The LSTM's state inputs are never quantized: the op keeps its per-frame h/c in
        float inside, so quantizing h/c only at chunk boundaries would make streaming differ
        from offline.
    """

    name: str = "static-int8"
    per_channel: bool = True
    activation_symmetric: bool = False
    method: str = "minmax"
    float_input_layer: bool | None = None
    op_types: tuple = ("Conv", "MatMul", "Gemm", "LeakyRelu", "Relu", "Clip", "MaxPool")
    quantize_lstm: bool = True
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    stream_tolerance: float = INT8_STREAM_TOLERANCE
    ort_optimization: str = "all"

    def __post_init__(self):
        if self.method not in CALIBRATION_METHODS:
            raise InvalidInputError(f"calibration method {self.method!r}: expected one of {CALIBRATION_METHODS}")


@dataclass(frozen=True)
class Fp16Config:
    """float16 weights and compute with float32 inputs/outputs (Cast at the graph boundary).

    keep_io_float32: clients feed float32 features and state and the card keeps declaring them
        float32; the graph casts at its edges. Measured: the Casts cost nothing noticeable and a
        float16 state round-trips float32 exactly, so streaming == offline still holds.
    op_block_list: ops kept in float32 (ONNX Runtime's CPU provider has no float16 kernel for
        them; the converter inserts Casts around them).
    """

    name: str = "fp16"
    keep_io_float32: bool = True
    op_block_list: tuple = ()
    # float16 rounding depends on how a kernel blocks its sums, which depends on the chunk length:
    # measured 2.6e-4 (random tiny lstm-ctc) and 5.5e-3 (trained tiny, 1-frame chunks, relative to
    # max(1, |ref|)) between the fp16 graph streamed and offline: a few float16 ulps (9.8e-4).
    stream_tolerance: float = 1e-2
    # Measured (onnxruntime 1.32, CPU): opening an fp16 LSTM graph at "all" segfaults in the NCHWc
    # transformer; "extended" loads and runs. The card records the level it was proved at.
    ort_optimization: str = "extended"


@dataclass(frozen=True)
class QatInt8Config:
    """Quantization-aware fine-tuning, then a QDQ int8 export with the same state ports.

    Fake quantization (torchao's observers and fake-quantize ops) on every Linear/LSTM/Conv1d/Conv2d
    and on the speech embedding's convolution blocks (:mod:`.qat_modules`): weights int8
    symmetric per output channel, activations per-tensor affine int8 (moving-average min/max)
    where ONNX Runtime's int8 kernels need them, so the export runs on QLinearConv /
    QLinearLeakyRelu / int8 MaxPool like ``static-int8``. Frozen layers (the speech embedding)
    keep their weights; only their ranges are learnt. The optimiser, its schedule (warm-up, then
    cosine to ``final_lr_fraction``), the observer freeze and gradient clipping are the
    recipe's; each step's loss is the caller's training step.
    """

    name: str = "qat-int8"
    steps: int = 300
    learning_rate: float = 2e-4
    warmup_steps: int = 20
    final_lr_fraction: float = 0.1
    observer_steps: int = 150  # after this many steps the ranges freeze and only weights train
    grad_clip: float = 5.0
    float_input_layer: bool = False  # as StaticInt8Config's, for the speech embedding's first conv
    seed: int = 0
    threads: int = 1
    # QDQ graph vs torch fake-quant model (an export check; the certificate is streamed vs offline):
    # both quantize with the same constants, but a 1e-7 float difference upstream of a quantizer
    # (torch's kernel vs ONNX Runtime's) can push a value across a rounding boundary. With only an
    # LSTM and a head quantized, one quantum of the head input moves a logit by scale * |w|
    # (measured 1.3e-3, at one frame in 500, argmax unchanged; states to 2e-6): within this bound.
    # Through the built-in model's 20 quantized convolutions (~40 quantizers in a row, 1e5
    # activations each) such flips happen in every layer and cascade: measured max |logit diff|
    # 0.07-0.37 against ONNX Runtime at level "disable" and 0.4-1.0 at "all" (where QLinearConv
    # requantizes in its own order), on logits up to 15, with 99.4 % of frames' argmax equal. So
    # the export is accepted when within the bound, or when the argmax agrees on this share of
    # frames (a misplaced scale or axis drops it to chance).
    reference_tolerance: float = 1e-2
    min_torch_argmax_agreement: float = 0.98
    stream_tolerance: float = INT8_STREAM_TOLERANCE
    ort_optimization: str = "all"

    def __post_init__(self):
        if self.steps < 1 or self.warmup_steps < 0 or not 0 <= self.final_lr_fraction <= 1:
            raise InvalidInputError("qat needs steps >= 1, warmup_steps >= 0 and 0 <= final_lr_fraction <= 1")


RecipeConfig = DynamicInt8Config | StaticInt8Config | Fp16Config | QatInt8Config

PRESETS: dict[str, RecipeConfig] = {
    "dynamic-int8": DynamicInt8Config(),
    "static-int8": StaticInt8Config(),
    "static-int8-per-tensor": StaticInt8Config(name="static-int8-per-tensor", per_channel=False),
    "static-int8-percentile": StaticInt8Config(name="static-int8-percentile", method="percentile"),
    "fp16": Fp16Config(),
    "qat-int8": QatInt8Config(),
    # A few dozen steps: for tests and smoke runs, not for accuracy.
    "qat-int8-smoke": QatInt8Config(name="qat-int8-smoke", steps=30, observer_steps=15),
}

PRECISION = {DynamicInt8Config: "int8", StaticInt8Config: "int8", Fp16Config: "fp16", QatInt8Config: "int8"}


def get_recipe(name: str, **overrides) -> RecipeConfig:
    """The preset ``name`` with ``overrides`` replaced (typed: unknown fields are errors)."""
    if name not in PRESETS:
        raise InvalidInputError(f"unknown recipe {name!r}: expected one of {', '.join(PRESETS)}")
    cfg = PRESETS[name]
    if overrides:
        known = {f.name for f in dataclasses.fields(cfg)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise InvalidInputError(f"recipe {name!r} has no option(s) {unknown}; expected a subset of {sorted(known)}")
        cfg = dataclasses.replace(cfg, **overrides)
    if cfg.ort_optimization not in ORT_LEVELS:
        raise InvalidInputError(f"ort_optimization {cfg.ort_optimization!r}: expected one of {ORT_LEVELS}")
    return cfg


def precision_of(cfg: RecipeConfig) -> str:
    return PRECISION[type(cfg)]


def recipe_dict(cfg: RecipeConfig) -> dict:
    """The config as JSON-ready data for the card (tuples become lists)."""
    return dataclasses.asdict(cfg)
