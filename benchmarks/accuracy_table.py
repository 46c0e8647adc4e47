"""Accuracy table of every precision recipe, measured in one run by one command.

    python benchmarks/accuracy_table.py --checkpoint /work/runs/digits_george.pt -o runs/quant_table
    python benchmarks/accuracy_table.py --model fp32.onnx --checkpoint ckpt.pt -o out   # an existing export
    python benchmarks/accuracy_table.py --model out/fp32.onnx --checkpoint ckpt.pt -o out --reuse \
        --sets stateport.train.real_speech:real_speech_sets      # more sets, on the files already made
    python benchmarks/accuracy_table.py --checkpoint stateport/assets/digits/checkpoint.pt -o out \
        --qat-recipe qat-int8-smoke --sets stateport.train.real_speech:accuracy_table_sets   # docs/quantization.md

FP32 (exported from the checkpoint, parity-proved), FP16, dynamic int8, static int8 (state-loop
calibration on the training speakers) and QAT int8 (fine-tuned from the checkpoint), each proved,
then streamed through the client runtime (Recognizer, 20 ms reads, the card's end-of-input flush,
1 thread, at the ORT level its card was proved at) over the checkpoint recipe's held-out FSDD
speaker: its single-digit recordings as FSDD ships them (8 kHz, trimmed, nothing appended) and
composed digit strings (``stateport.train.quantize_data.table_sets``). Per set WER, file size, RTF
of the whole client loop and of the model alone, step latency, speed-up over fp32. Writes
accuracy_table.json, .txt and .md into the output folder. A benchmark: it asserts nothing.
Same as ``stateport quantize FP32.onnx --table -o OUT --checkpoint CKPT``.
"""

from __future__ import annotations

import argparse
import json


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="float checkpoint (its recipe names the held-out speaker)")
    p.add_argument("--model", help="its fp32 export (default: exported here from the checkpoint)")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--utterances", type=int, default=60, help="composed held-out digit strings to stream")
    p.add_argument("--qat-recipe", default="qat-int8", help="QAT preset (qat-int8-smoke for a quick run)")
    p.add_argument("--sets", action="append", default=[], metavar="MODULE:FUNCTION",
                   help="more evaluation sets: FUNCTION(speaker) returns a list of sets (name, items, "
                        "sample_rate_hz[, kind]), e.g. stateport.train.real_speech:accuracy_table_sets (the "
                        "real-speech subset of docs/quantization.md) or :real_speech_sets (all of them)")
    p.add_argument("--reuse", action="store_true", help="measure the recipes' files already in -o (made and "
                                                       "proved from this fp32 file) instead of making them again")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    import torch

    torch.set_num_threads(1)
    import os

    from stateport.quantize.accuracy import accuracy_table, export_fp32
    from stateport.runtime.model_file import read_card
    from stateport.train.quantize_data import DigitQatTask, fsdd_calibration, held_out_speaker, table_sets

    sets = table_sets(args.checkpoint, strings=args.utterances)
    for spec in args.sets:  # sets made elsewhere go in as they are: accuracy_table only reads their fields
        import importlib

        module, _, function = spec.partition(":")
        sets += list(getattr(importlib.import_module(module), function)(held_out_speaker(args.checkpoint)))

    model = args.model
    if model is None:
        os.makedirs(args.out, exist_ok=True)
        model, problem = export_fp32(args.checkpoint, os.path.join(args.out, "fp32.onnx"))
        if problem:
            print(problem)
    table = accuracy_table(model, args.out, sets=sets,
                           checkpoint=args.checkpoint, calib=fsdd_calibration(args.checkpoint),
                           qat=DigitQatTask.for_card(read_card(model), checkpoint=args.checkpoint,
                                                     recipe=args.qat_recipe),
                           qat_recipe=args.qat_recipe, reuse=args.reuse, log=(lambda *_: None) if args.json else print)
    print(json.dumps(table.to_dict(), indent=2, default=str) if args.json else table.to_text())


if __name__ == "__main__":
    main()
