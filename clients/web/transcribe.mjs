#!/usr/bin/env node
// Transcribe WAV files with a stateport audio-in model in Node (onnxruntime-node), through the
// same module the browser page uses, fed as a microphone would feed it.
//
//   node transcribe.mjs MODEL.onnx FILE.wav [FILE.wav ...] [--json] [--block-samples N] [--chunk-samples N]
//
// --block-samples: how many samples (at the file's rate) arrive at a time (default 1024, an
// AudioWorklet-sized delivery); --chunk-samples: the model call size (default: the card's).
import { readFile } from "node:fs/promises";
import * as ort from "onnxruntime-node";
import { Recognizer } from "./stateport.js";
import { readWav } from "./wav.js";

const args = process.argv.slice(2);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  if (i < 0) return fallback;
  const value = Number(args[i + 1]);
  args.splice(i, 2);
  return value;
};
const json = args.includes("--json");
const positional = args.filter((a) => a !== "--json");
const blockSamples = option("--block-samples", 1024);
const chunkSamples = option("--chunk-samples", null);
const [modelPath, ...files] = positional.filter((a) => !a.startsWith("--"));
if (!modelPath || !files.length) {
  console.error("usage: node transcribe.mjs MODEL.onnx FILE.wav [FILE.wav ...] [--json] [--block-samples N] [--chunk-samples N]");
  process.exit(2);
}

const rec = await Recognizer.create(ort, await readFile(modelPath), {
  chunkSamples, sessionOptions: { intraOpNumThreads: 1, interOpNumThreads: 1 } });
const results = [];
for (const file of files) {
  const { sampleRate, samples } = readWav(await readFile(file));
  const { text, tokens, stream } = await rec.transcribe(sampleRate, samples, { blockSamples });
  const ms = stream.calls.map((c) => c.ms);
  results.push({ file, text, tokens, sample_rate_hz: sampleRate, calls: ms.length,
    ms_per_call: ms.reduce((a, b) => a + b, 0) / Math.max(ms.length, 1) });
  if (!json) console.log(`${file}: ${text}`);
}
if (json) console.log(JSON.stringify(results));
