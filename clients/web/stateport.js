// stateport.js: run a stateport audio-in model (PCM in, explicit state ports) from its card alone.
//
// No build step, no dependency of its own: an ES module for the browser (onnxruntime-web) and Node
// (onnxruntime-node). The caller passes the ONNX Runtime module it loaded, so one file serves both.
//
//   const rec = await Recognizer.create(ort, modelBytes);     // reads the card inside the file
//   const stream = rec.createStream();
//   stream.acceptWaveform(48000, float32Samples);             // any rate: resampled to the card's
//   for (const event of await rec.decode(stream)) ...         // {type: "partial", text, tokens}
//   stream.inputFinished(); await rec.decode(stream);         // feeds the end-of-input padding
//   rec.getResult(stream)                                     // {text, tokens}
//
// The model's contract is its card (the JSON in the ONNX metadata entry "stateport"): the audio
// port, the state ports with their initial values, the rate, the nominal chunk, the vocabulary.
// Every state output is fed back as the next call's state input; that is the whole client.

export const CARD_KEY = "stateport";
export const CARD_SCHEMA = "stateport.card/1";

// ----------------------------------------------------------------------------- the card
/**
 * The card stored in an ONNX file: the metadata_props entry CARD_KEY, read from the file's bytes.
 *
 * onnxruntime-web does not expose a model's metadata_props, so the protobuf is walked here: only
 * the top level of ModelProto (field 14 = metadata_props, StringStringEntryProto {1: key, 2:
 * value}); every other field is skipped by its length, so a large graph costs nothing.
 * @param {Uint8Array} bytes the whole .onnx file
 * @returns {object} the parsed card
 */
export function readCard(bytes) {
  if (!(bytes instanceof Uint8Array)) throw new TypeError("readCard expects the model file as a Uint8Array");
  let found = null;
  walkFields(bytes, 0, bytes.length, (field, wire, start, end) => {
    if (field !== 14 || wire !== 2) return;
    let key = null, value = null;
    walkFields(bytes, start, end, (f, w, s, e) => {
      if (w !== 2) return;
      if (f === 1) key = utf8(bytes.subarray(s, e));
      else if (f === 2) value = utf8(bytes.subarray(s, e));
    });
    if (key === CARD_KEY) found = value;
  });
  if (found === null) throw new Error(`this ONNX file has no "${CARD_KEY}" card in its metadata: export it with stateport`);
  let card;
  try {
    card = JSON.parse(found);
  } catch (e) {
    throw new Error(`the model's card is not valid JSON: ${e.message}`);
  }
  if (card.schema !== CARD_SCHEMA) throw new Error(`card schema ${JSON.stringify(card.schema)} is not supported: expected ${CARD_SCHEMA}`);
  return card;
}

function utf8(bytes) {
  return new TextDecoder("utf-8").decode(bytes);
}

function readVarint(bytes, pos) {
  // Numbers, not 32-bit shifts: a graph field's length can exceed 2^31.
  let value = 0, scale = 1, b;
  do {
    if (pos >= bytes.length) throw new Error("the ONNX file is truncated (a varint runs past its end)");
    b = bytes[pos++];
    value += (b & 0x7f) * scale;
    scale *= 128;
  } while (b & 0x80);
  return [value, pos];
}

function walkFields(bytes, pos, end, visit) {
  while (pos < end) {
    let tag, length;
    [tag, pos] = readVarint(bytes, pos);
    const field = Math.floor(tag / 8), wire = tag % 8;
    if (wire === 0) {
      [, pos] = readVarint(bytes, pos);
    } else if (wire === 1) {
      pos += 8;
    } else if (wire === 2) {
      [length, pos] = readVarint(bytes, pos);
      if (pos + length > end) throw new Error("the ONNX file is truncated (a field runs past its end)");
      visit(field, wire, pos, pos + length);
      pos += length;
    } else if (wire === 5) {
      pos += 4;
    } else {
      throw new Error(`not an ONNX file (protobuf wire type ${wire} at byte ${pos})`);
    }
  }
}

function encodeVarint(value) {
  const out = [];
  while (value >= 128) {
    out.push((value % 128) | 128);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}

/** Each top-level field of a protobuf message: {field, wire, start (of its tag), bodyStart, end}. */
function fieldsOf(bytes, pos, end) {
  const fields = [];
  walkFieldsRaw(bytes, pos, end, (f) => fields.push(f));
  return fields;
}

function walkFieldsRaw(bytes, pos, end, visit) {
  while (pos < end) {
    const start = pos;
    let tag, length;
    [tag, pos] = readVarint(bytes, pos);
    const field = Math.floor(tag / 8), wire = tag % 8;
    let bodyStart = pos;
    if (wire === 0) [, pos] = readVarint(bytes, pos);
    else if (wire === 1) pos += 8;
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      [length, pos] = readVarint(bytes, pos);
      bodyStart = pos;
      pos += length;
    } else throw new Error(`not an ONNX file (protobuf wire type ${wire} at byte ${start})`);
    visit({ field, wire, start, bodyStart, end: pos });
  }
}

/**
 * The model with the default values of its state inputs removed, so every state is a plain graph input.
 *
 * Why: stateport gives each state input an initializer holding its initial value (one graph, two
 * modes: feed only audio and the graph runs offline from a fresh state). ONNX Runtime's JavaScript
 * API (onnxruntime-web and -node, 1.30) lists only inputs without an initializer in `inputNames`
 * and refuses (web) or silently ignores (node) a feed of any other name, so a state could never
 * be fed back. Without the initializers it must be, which is what this client does anyway.
 * The bytes are otherwise unchanged (graph, weights, card).
 */
export function withoutStateDefaults(bytes, card) {
  const stateNames = new Set((card.ports || []).filter((p) => p.role === "state").map((p) => p.name));
  const top = fieldsOf(bytes, 0, bytes.length);
  const graph = top.find((f) => f.field === 7 && f.wire === 2);
  if (!graph) throw new Error("not an ONNX model (no graph)");
  const kept = [];
  let removed = 0;
  for (const f of fieldsOf(bytes, graph.bodyStart, graph.end)) {
    if (f.field === 5 && f.wire === 2) { // GraphProto.initializer: TensorProto, name = field 8
      let name = null;
      walkFields(bytes, f.bodyStart, f.end, (tf, tw, s, e) => {
        if (tf === 8 && tw === 2) name = utf8(bytes.subarray(s, e));
      });
      if (stateNames.has(name)) {
        removed++;
        continue;
      }
    }
    kept.push(bytes.subarray(f.start, f.end));
  }
  if (!removed) return bytes;
  const graphLength = kept.reduce((a, k) => a + k.length, 0);
  const header = [...encodeVarint(7 * 8 + 2), ...encodeVarint(graphLength)];
  const size = bytes.length - (graph.end - graph.start) + header.length + graphLength;
  const out = new Uint8Array(size);
  let at = 0;
  for (const f of top) {
    if (f === graph) {
      out.set(header, at);
      at += header.length;
      for (const k of kept) {
        out.set(k, at);
        at += k.length;
      }
    } else {
      out.set(bytes.subarray(f.start, f.end), at);
      at += f.end - f.start;
    }
  }
  return out;
}

/** Samples of a Kaldi duration in ms: float32 arithmetic as Kaldi and stateport compute it. */
function kaldiSamples(rateHz, ms) {
  const f = Math.fround;
  return Math.trunc(f(f(f(rateHz) * f(0.001)) * f(ms)));
}

/** What a client of this card needs, checked once; throws an Error saying what is wrong. */
export function audioContract(card) {
  const fe = card.frontend;
  if (!fe || fe.in_graph !== true) {
    throw new Error(`${card.name}: this model takes feature frames, not audio; export it with ` +
      "`stateport export ... --audio-input` to put its frontend inside the graph");
  }
  const ports = card.ports || [];
  const inputs = ports.filter((p) => p.role === "input");
  const outputs = ports.filter((p) => p.role === "output");
  const states = ports.filter((p) => p.role === "state");
  if (inputs.length !== 1 || inputs[0].dtype !== "float32" || inputs[0].shape.length !== 2) {
    throw new Error(`${card.name}: expected one float32 audio input [batch, samples]`);
  }
  const out = card.output || {};
  if (out.kind !== "ctc" || !Array.isArray(out.vocabulary) || !Number.isInteger(out.blank_id)) {
    throw new Error(`${card.name}: this client decodes CTC models; the card's output is ${JSON.stringify(out.kind)}`);
  }
  const port = outputs.find((p) => p.name === (out.port || outputs[0].name));
  if (!port || port.time_axis !== 1 || port.shape.length !== 3) {
    throw new Error(`${card.name}: expected the CTC output [batch, steps, vocabulary]`);
  }
  for (const s of states) {
    if (!["float32", "int64", "bool"].includes(s.dtype)) throw new Error(`${card.name}: state ${s.name} has dtype ${s.dtype}`);
    s.shape.forEach((d, axis) => {
      if (axis !== s.batch_axis && !Number.isInteger(d)) throw new Error(`${card.name}: state ${s.name} has a symbolic dim ${d}`);
    });
  }
  const rate = card.streaming.sample_rate_hz;
  const hop = kaldiSamples(fe.sample_rate_hz, fe.frame_shift_ms);
  const window = kaldiSamples(fe.sample_rate_hz, fe.frame_length_ms);
  // The frames the graph can hold back until a whole model step: the pending-frame buffer's size + 1.
  const pending = states.find((s) => s.name === "frontend_frames_in");
  const stepFrames = pending ? pending.shape[1] + 1 : 1;
  const tailMs = card.streaming.tail_padding_ms;
  // A card without a measured tail: the receptive field (the window past the last hop and the rest of
  // the last output step), as stateport.runtime.features.receptive_field_tail_ms computes it.
  const receptiveField = Math.max(window - hop, 0) + card.streaming.subsampling - hop;
  return {
    rate,
    inputName: inputs[0].name,
    minSamples: Math.max(1, card.streaming.min_frames || 1),
    nominalSamples: Math.max(1, card.streaming.frames_per_step || hop),
    samplesPerStep: card.streaming.subsampling,
    outputName: port.name,
    vocabulary: out.vocabulary,
    blankId: out.blank_id,
    states,
    // End of input: the card's measured tail padding (streaming.tail_padding_ms; else the receptive
    // field) of silence, then the zeros that complete the frames the graph still holds back.
    tailSamples: Number.isFinite(tailMs) ? Math.round((tailMs * rate) / 1000) : receptiveField,
    windowSamples: window,
    hopSamples: hop,
    stepFrames,
    optimization: { disable: "disabled", basic: "basic", extended: "extended", all: "all" }[
      (card.certificate && card.certificate.ort_graph_optimization) ||
      (card.provenance && card.provenance.quantization && card.provenance.quantization.ort_graph_optimization) || "all"],
  };
}

// ----------------------------------------------------------------------------- resampling
function gcd(a, b) {
  while (b) [a, b] = [b, a % b];
  return a;
}

function besselI0(x) {
  let sum = 1, term = 1;
  for (let k = 1; k < 50; k++) {
    term *= (x / (2 * k)) ** 2;
    sum += term;
    if (term < 1e-12 * sum) break;
  }
  return sum;
}

/**
 * Streaming polyphase resampler: windowed sinc (Kaiser, beta 8.6, 32 zero crossings each side,
 * cutoff at 0.95 of the lower Nyquist). Any chunking of the input gives the same output.
 * Why our own: the browser's AudioContext resamples only inside one context, to the rate the
 * context runs at, and the model's rate (16 kHz) is not one every device can open.
 */
export class Resampler {
  constructor(inRate, outRate, { zeroCrossings = 32, rolloff = 0.95, beta = 8.6 } = {}) {
    if (!Number.isInteger(inRate) || !Number.isInteger(outRate) || inRate <= 0 || outRate <= 0) {
      throw new Error(`sample rates must be positive integers; got ${inRate} -> ${outRate}`);
    }
    const g = gcd(inRate, outRate);
    this.up = outRate / g; // phases
    this.down = inRate / g;
    if (this.up > 4096) throw new Error(`resampling ${inRate} -> ${outRate} Hz needs ${this.up} filter phases; not supported`);
    const cutoff = rolloff * Math.min(1, outRate / inRate); // in cycles per input sample x 2
    this.half = Math.ceil(zeroCrossings / cutoff);
    const taps = 2 * this.half;
    this.table = new Float32Array(this.up * taps);
    const i0beta = besselI0(beta);
    for (let p = 0; p < this.up; p++) {
      const frac = p / this.up;
      for (let k = 0; k < taps; k++) {
        const t = k - this.half + 1 - frac; // tap k reads x[n - half + 1 + k]; output at n + frac
        const x = cutoff * t;
        const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
        const r = t / this.half;
        const win = Math.abs(r) <= 1 ? besselI0(beta * Math.sqrt(1 - r * r)) / i0beta : 0;
        this.table[p * taps + k] = cutoff * sinc * win;
      }
    }
    this.taps = taps;
    this.history = new Float32Array(this.half - 1); // x[-half + 1 .. -1]: silence before the start
    this.phase = 0; // (j * down) mod up of the next output j (its position is n + phase / up)
    this.base = this.half - 1; // where x[n] of the next output sits in history + input
    this.samplesIn = 0;
    this.samplesOut = 0;
  }

  /** Resample a chunk; returns the output samples it completes. */
  process(input) {
    this.samplesIn += input.length;
    return this.run(input, Infinity);
  }

  run(input, limit) {
    const x = new Float32Array(this.history.length + input.length);
    x.set(this.history, 0);
    x.set(input, this.history.length);
    const out = [];
    const taps = this.taps;
    let n = this.base, phase = this.phase;
    while (n + this.half < x.length && this.samplesOut + out.length < limit) {
      const row = phase * taps;
      const start = n - this.half + 1;
      let acc = 0;
      for (let k = 0; k < taps; k++) acc += x[start + k] * this.table[row + k];
      out.push(acc);
      phase += this.down;
      n += Math.floor(phase / this.up);
      phase %= this.up;
    }
    const keepFrom = n - this.half + 1; // the first sample the next output reads
    this.history = x.slice(keepFrom);
    this.base = n - keepFrom;
    this.phase = phase;
    this.samplesOut += out.length;
    return Float32Array.from(out);
  }

  /** The outputs still owed at the end of input: as many as the input's duration holds. */
  flush() {
    const owed = Math.ceil((this.samplesIn * this.up) / this.down);
    return this.run(new Float32Array(this.half + 1), owed);
  }
}

// ----------------------------------------------------------------------------- recognizer
function checkSamples(samples) {
  if (!(samples instanceof Float32Array)) {
    throw new TypeError("samples must be a Float32Array of PCM values in [-1, 1] (divide 16-bit audio by 32768)");
  }
  for (let i = 0; i < samples.length; i++) {
    if (!Number.isFinite(samples[i])) throw new RangeError(`samples[${i}] is ${samples[i]}; expected finite values`);
  }
}

/** One conversation: its audio not yet run, the model state, the decoder and the text so far. */
export class Stream {
  constructor(recognizer) {
    this.recognizer = recognizer;
    const c = recognizer.contract;
    this.state = {};
    for (const s of c.states) this.state[s.name] = recognizer.freshState(s);
    this.pending = []; // Float32Array pieces at the model rate, not yet run
    this.pendingSamples = 0;
    this.resampler = null;
    this.inputRate = null;
    this.finished = false;
    this.completed = false; // the zeros that complete the graph's last model step were fed
    this.tokens = [];
    this.lastToken = c.blankId;
    this.samplesIn = 0; // at the model rate, padding excluded
    this.samplesRun = 0;
    this.steps = 0; // output steps decoded
    this.calls = [];  // per session.run: {samples, ms}
  }

  /** Push audio at any rate (resampled to the card's); it runs on the next decode(). */
  acceptWaveform(sampleRate, samples) {
    if (this.finished) throw new Error("acceptWaveform after inputFinished(): create a new stream");
    checkSamples(samples);
    const rate = this.recognizer.contract.rate;
    if (this.inputRate === null) {
      this.inputRate = sampleRate;
      if (sampleRate !== rate) this.resampler = new Resampler(sampleRate, rate);
    } else if (sampleRate !== this.inputRate) {
      throw new Error(`the sample rate changed from ${this.inputRate} to ${sampleRate} Hz within a stream`);
    }
    const atRate = this.resampler ? this.resampler.process(samples) : samples.slice();
    this.samplesIn += atRate.length;
    this.push(atRate);
  }

  /** End of input: the resampler's tail, then the end-of-input padding (silence; none if nothing was heard). */
  inputFinished() {
    if (this.finished) return;
    if (this.resampler) {
      const tail = this.resampler.flush();
      this.samplesIn += tail.length;
      this.push(tail);
    }
    if (this.samplesIn) this.push(new Float32Array(this.recognizer.contract.tailSamples));
    this.finished = true;
  }

  /**
   * Zeros that make the graph step the frames it still holds back (after the end-of-input padding):
   * the next frame needs window - frontend_sample_count samples, each frame after it a hop, until the
   * waiting frames (frontend_frame_count) make a whole model step. 0 when none wait.
   */
  completionSamples() {
    const c = this.recognizer.contract;
    const waiting = this.state.frontend_frame_count_in;
    const count = waiting ? Number(waiting.data[0]) : 0;
    if (!count) return 0;
    const have = Number(this.state.frontend_sample_count_in.data[0]);
    return c.windowSamples - have + (c.stepFrames - count - 1) * c.hopSamples;
  }

  push(samples) {
    if (samples.length) {
      this.pending.push(samples);
      this.pendingSamples += samples.length;
    }
  }

  take() {
    const all = new Float32Array(this.pendingSamples);
    let at = 0;
    for (const piece of this.pending) {
      all.set(piece, at);
      at += piece.length;
    }
    this.pending = [];
    this.pendingSamples = 0;
    return all;
  }
}

export class Recognizer {
  /**
   * @param {object} ort the onnxruntime-web or onnxruntime-node module
   * @param {Uint8Array|ArrayBuffer} model the .onnx file's bytes
   * @param {object} options chunkSamples (default: the card's nominal chunk), sessionOptions
   */
  static async create(ort, model, { chunkSamples = null, sessionOptions = {} } = {}) {
    const bytes = model instanceof Uint8Array ? model : new Uint8Array(model);
    const card = readCard(bytes);
    const contract = audioContract(card);
    const session = await ort.InferenceSession.create(withoutStateDefaults(bytes, card), {
      graphOptimizationLevel: contract.optimization, // the level the card's proof ran at
      ...sessionOptions,
    });
    return new Recognizer(ort, session, card, contract, chunkSamples);
  }

  constructor(ort, session, card, contract, chunkSamples) {
    this.ort = ort;
    this.session = session;
    this.card = card;
    this.contract = contract;
    this.chunkSamples = chunkSamples ?? contract.nominalSamples;
    if (!Number.isInteger(this.chunkSamples) || this.chunkSamples < contract.minSamples) {
      throw new Error(`chunkSamples must be an integer >= ${contract.minSamples}; got ${chunkSamples}`);
    }
    this.outputNames = [contract.outputName, ...contract.states.map((s) => s.output)];
  }

  createStream() {
    return new Stream(this);
  }

  freshState(s) {
    const shape = s.shape.map((d, axis) => (axis === s.batch_axis ? 1 : d));
    const size = shape.reduce((a, b) => a * b, 1);
    const data = s.dtype === "int64" ? new BigInt64Array(size).fill(BigInt(Math.round(s.init)))
      : s.dtype === "bool" ? new Uint8Array(size).fill(s.init ? 1 : 0) // ONNX Runtime's JS bool tensors
        : new Float32Array(size).fill(s.init);
    return new this.ort.Tensor(s.dtype, data, shape);
  }

  /** Whether decode() has work: a nominal chunk of audio, or the rest after inputFinished(). */
  isReady(stream) {
    return stream.pendingSamples >= this.chunkSamples || (stream.finished && stream.pendingSamples > 0);
  }

  /**
   * Run the audio that is ready (one call with all of it); returns the events: partial text when tokens came.
   * After inputFinished(), this runs the rest and the zeros that complete the graph's last step.
   */
  async decode(stream) {
    const events = [];
    for (;;) {
      if (!this.isReady(stream)) {
        if (!stream.finished || stream.completed) break;
        stream.completed = true;
        const extra = stream.samplesIn ? stream.completionSamples() : 0;
        if (!extra) break;
        stream.push(new Float32Array(extra));
      }
      const audio = stream.take();
      const feeds = { [this.contract.inputName]: new this.ort.Tensor("float32", audio, [1, audio.length]) };
      for (const s of this.contract.states) feeds[s.name] = stream.state[s.name];
      const t0 = performance.now();
      const out = await this.session.run(feeds, this.outputNames);
      stream.calls.push({ samples: audio.length, ms: performance.now() - t0 });
      stream.samplesRun += audio.length;
      // Copied: a runtime may reuse an output's memory in the next run, while it reads this as input.
      for (const s of this.contract.states) {
        const t = out[s.output];
        stream.state[s.name] = new this.ort.Tensor(t.type, t.data.slice(), t.dims);
      }
      const added = this.decodeCtc(stream, out[this.contract.outputName]);
      if (added.length) {
        events.push({ type: "partial", text: this.textOf(stream.tokens), tokens: stream.tokens.slice(),
          newTokens: added, audioSeconds: Math.min(stream.samplesRun, stream.samplesIn) / this.contract.rate });
      }
    }
    return events;
  }

  /** Greedy CTC over [1, steps, V] logits: best token per step, repeats merged, blanks dropped. */
  decodeCtc(stream, logits) {
    const [, steps, vocab] = logits.dims;
    const data = logits.data;
    const added = [];
    for (let t = 0; t < steps; t++) {
      let best = 0, bestValue = -Infinity;
      for (let v = 0; v < vocab; v++) {
        const x = data[t * vocab + v];
        if (x > bestValue) {
          bestValue = x;
          best = v;
        }
      }
      if (best !== this.contract.blankId && best !== stream.lastToken) {
        stream.tokens.push(best);
        added.push(best);
      }
      stream.lastToken = best;
    }
    stream.steps += steps;
    return added;
  }

  textOf(tokens) {
    return tokens.map((t) => this.contract.vocabulary[t]).join(" ");
  }

  /**
   * A whole recording as a stream would get it: ``blockSamples`` at a time (an AudioWorklet-sized
   * delivery by default), decoded as it goes, then the end of input. Returns the result and the stream.
   */
  async transcribe(sampleRate, samples, { blockSamples = 1024 } = {}) {
    const stream = this.createStream();
    for (let at = 0; at < samples.length; at += blockSamples) {
      stream.acceptWaveform(sampleRate, samples.subarray(at, at + blockSamples));
      await this.decode(stream);
    }
    stream.inputFinished();
    await this.decode(stream);
    return { ...this.getResult(stream), stream };
  }

  /** The text and token ids so far (final once inputFinished() ran through decode()). */
  getResult(stream) {
    return { text: this.textOf(stream.tokens), tokens: stream.tokens.slice(),
      final: stream.finished && stream.completed && !stream.pendingSamples };
  }
}
