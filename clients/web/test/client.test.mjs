// Unit tests of the client module, run by `npm test` (node --test) and by tests/web/test_node_client.py.
// STATEPORT_AUDIO_MODEL: an audio-in export to run end to end (the pytest wrapper makes one); without
// it those tests are skipped and say so.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import * as ort from "onnxruntime-node";
import * as ortWeb from "onnxruntime-web";
import { Recognizer, Resampler, audioContract, readCard, withoutStateDefaults } from "../stateport.js";
import { readWav } from "../wav.js";

const repo = fileURLToPath(new URL("../../../", import.meta.url));
const shippedModel = `${repo}stateport/assets/digits/model.onnx`; // features-in
const clip = `${repo}stateport/assets/digits/clips/digits_4.wav`;
const audioModel = process.env.STATEPORT_AUDIO_MODEL;

test("the card is read from the model's bytes", async () => {
  const card = readCard(new Uint8Array(await readFile(shippedModel)));
  assert.equal(card.schema, "stateport.card/1");
  assert.equal(card.output.kind, "ctc");
  assert.deepEqual(card.output.vocabulary.slice(0, 3), ["<blank>", "zero", "one"]);
});

test("a features-in model is refused with what to do", async () => {
  const card = readCard(new Uint8Array(await readFile(shippedModel)));
  assert.throws(() => audioContract(card), /--audio-input/);
});

test("not an ONNX file, or no card: one clear error", () => {
  assert.throws(() => readCard(new Uint8Array([0x0a, 0x05, 0x01])), /truncated/);
  assert.throws(() => readCard(new Uint8Array([0x08, 0x07])), /no "stateport" card/);
});

test("without their defaults, state inputs become inputs ONNX Runtime's JavaScript API can feed", async () => {
  const bytes = new Uint8Array(await readFile(shippedModel));
  const card = readCard(bytes);
  const states = card.ports.filter((p) => p.role === "state").map((p) => p.name);
  const before = await ort.InferenceSession.create(bytes);
  assert.deepEqual(before.inputNames, ["features"]); // the JS API hides inputs that have an initializer
  const stripped = withoutStateDefaults(bytes, card);
  const after = await ort.InferenceSession.create(stripped);
  assert.deepEqual(after.inputNames, ["features", ...states]);
  assert.deepEqual(readCard(stripped), card);
  // What was dropped is the states' defaults: their values (batch 1) and a little protobuf around each.
  const itemBytes = { float32: 4, int64: 8, bool: 1 };
  const stateBytes = card.ports.filter((p) => p.role === "state")
    .reduce((a, p) => a + itemBytes[p.dtype] * p.shape.reduce((n, d, axis) => n * (axis === p.batch_axis ? 1 : d), 1), 0);
  const dropped = bytes.length - stripped.length;
  assert.ok(dropped >= stateBytes && dropped < stateBytes + 200 * states.length, `${dropped} vs ${stateBytes}`);
});

// Why withoutStateDefaults exists, pinned to ONNX Runtime's JavaScript API as it behaves (1.30): a state
// input that also has an initializer (its default, so the graph runs offline from the audio alone) is not
// listed in inputNames; onnxruntime-web refuses a feed of it, and onnxruntime-node silently ignores the
// feed (every call would start from the initial state: garbage, no error). If either assertion below
// fails, ONNX Runtime changed: revisit withoutStateDefaults, docs/browser.md and the README's card section.
function chunk(seed) {
  const x = new Float32Array(16 * 32);
  for (let i = 0; i < x.length; i++) x[i] = -8 + 4 * Math.sin(0.37 * i + seed) + Math.cos(0.011 * i * seed);
  return x;
}

async function stepTwice(runtime, bytes, card, { withDefaults }) {
  const session = await runtime.InferenceSession.create(withDefaults ? bytes : withoutStateDefaults(bytes, card));
  const states = card.ports.filter((p) => p.role === "state");
  const fresh = Object.fromEntries(states.map((p) => {
    const shape = p.shape.map((d, axis) => (axis === p.batch_axis ? 1 : d));
    const size = shape.reduce((a, b) => a * b, 1);
    const data = p.dtype === "bool" ? new Uint8Array(size).fill(p.init ? 1 : 0) : new Float32Array(size).fill(p.init);
    return [p.name, new runtime.Tensor(p.dtype, data, shape)];
  }));
  const run = (x, state) => session.run({ features: new runtime.Tensor("float32", x, [1, 16, 32]), ...state });
  const first = await run(chunk(1), fresh);
  const carried = Object.fromEntries(states.map((p) => [p.name, first[p.output]]));
  return { fromState: (await run(chunk(2), carried)).logits.data, fromFresh: (await run(chunk(2), fresh)).logits.data };
}

test("ONNX Runtime's JavaScript API and state inputs with defaults: web refuses the feed, node ignores it", async () => {
  const bytes = new Uint8Array(await readFile(shippedModel));
  const card = readCard(bytes);
  const stripped = await stepTwice(ort, bytes, card, { withDefaults: false });
  assert.notDeepEqual(stripped.fromState, stripped.fromFresh); // the state matters to this step
  const node = await stepTwice(ort, bytes, card, { withDefaults: true });
  assert.deepEqual(node.fromState, node.fromFresh, "onnxruntime-node now honours a fed state that has a default");
  assert.deepEqual(node.fromFresh, stripped.fromFresh);
  ortWeb.env.wasm.numThreads = 1;
  const firstState = card.ports.find((p) => p.role === "state").name;
  await assert.rejects(stepTwice(ortWeb, bytes, card, { withDefaults: true }), new RegExp(`invalid input '${firstState}'`),
    "onnxruntime-web now takes a fed state that has a default");
  const web = await stepTwice(ortWeb, bytes, card, { withDefaults: false });
  assert.ok(web.fromState.every((v, i) => Math.abs(v - stripped.fromState[i]) < 1e-4));
});

function tone(rate, seconds, freqs) {
  const x = new Float32Array(Math.round(rate * seconds));
  for (let i = 0; i < x.length; i++) for (const [f, a] of freqs) x[i] += a * Math.sin((2 * Math.PI * f * i) / rate);
  return x;
}

function resampleIn(chunks, x, inRate, outRate) {
  const r = new Resampler(inRate, outRate);
  const parts = [];
  for (let at = 0, c = 0; at < x.length; c++) {
    const n = chunks[c % chunks.length];
    parts.push(r.process(x.subarray(at, at + n)));
    at += n;
  }
  parts.push(r.flush());
  const y = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) { y.set(p, at); at += p.length; }
  return y;
}

for (const inRate of [48000, 44100, 8000]) {
  test(`resampling ${inRate} -> 16000 Hz: chunking-invariant, the passband kept, the rest removed`, () => {
    const keep = Math.min(inRate, 16000) * 0.4; // well inside both Nyquists
    const x = tone(inRate, 1.0, [[keep, 0.5], ...(inRate > 16000 ? [[9000, 0.5]] : [])]);
    const whole = resampleIn([x.length], x, inRate, 16000);
    const ragged = resampleIn([1, 7, 128, 333, 1024], x, inRate, 16000);
    assert.equal(whole.length, 16000);
    assert.deepEqual(ragged, whole);
    let err = 0;
    for (let i = 200; i < whole.length - 200; i++) err = Math.max(err, Math.abs(whole[i] - 0.5 * Math.sin((2 * Math.PI * keep * i) / 16000)));
    assert.ok(err < 1e-3, `max error ${err}`);
  });
}

test("a WAV file reads as mono float samples", async () => {
  const { sampleRate, samples } = readWav(new Uint8Array(await readFile(clip)));
  assert.equal(sampleRate, 16000);
  assert.equal(samples.length, 76341);
  assert.ok(samples.every((v) => v >= -1 && v < 1));
});

test("an audio-in model: any chunking and any rate give the same text", { skip: !audioModel && "set STATEPORT_AUDIO_MODEL to an audio-in export" }, async () => {
  const rec = await Recognizer.create(ort, await readFile(audioModel));
  const { sampleRate, samples } = readWav(new Uint8Array(await readFile(clip)));
  const run = (rate, x, blockSamples) => rec.transcribe(rate, x, { blockSamples });
  const nominal = await run(sampleRate, samples, 2560);
  assert.equal(nominal.text, "four five three seven zero");
  assert.deepEqual((await run(sampleRate, samples, 37)).tokens, nominal.tokens);
  const at48k = resampleIn([samples.length], samples, sampleRate, 48000);
  assert.deepEqual((await run(48000, at48k, 128)).tokens, nominal.tokens);
  const stream = rec.createStream();
  assert.throws(() => stream.acceptWaveform(16000, [0.1, 0.2]), /Float32Array/);
  assert.throws(() => stream.acceptWaveform(16000, new Float32Array([NaN])), /finite/);
});
