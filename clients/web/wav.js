// wav.js: read a RIFF/WAVE file (PCM 8/16/24/32-bit or IEEE float 32/64) into mono float32 samples.

/**
 * @param {Uint8Array} bytes the whole file
 * @returns {{sampleRate: number, samples: Float32Array}} channels averaged to mono, in [-1, 1]
 */
export function readWav(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const tag = (at) => String.fromCharCode(...bytes.subarray(at, at + 4));
  if (bytes.length < 12 || tag(0) !== "RIFF" || tag(8) !== "WAVE") throw new Error("not a RIFF/WAVE file");
  let format = null, data = null;
  for (let at = 12; at + 8 <= bytes.length;) {
    const id = tag(at), size = view.getUint32(at + 4, true), body = at + 8;
    if (id === "fmt ") {
      let code = view.getUint16(body, true);
      if (code === 0xfffe && size >= 26) code = view.getUint16(body + 24, true); // WAVE_FORMAT_EXTENSIBLE
      format = { code, channels: view.getUint16(body + 2, true), sampleRate: view.getUint32(body + 4, true),
        bits: view.getUint16(body + 14, true) };
    } else if (id === "data") {
      data = { at: body, size: Math.min(size, bytes.length - body) };
    }
    at = body + size + (size % 2);
  }
  if (!format || !data) throw new Error("WAVE file without a fmt or data chunk");
  const { code, channels, bits } = format;
  const width = bits / 8;
  const frames = Math.floor(data.size / (width * channels));
  const read = {
    "1:8": (o) => (view.getUint8(o) - 128) / 128,
    "1:16": (o) => view.getInt16(o, true) / 32768,
    "1:24": (o) => ((view.getUint8(o) | (view.getUint8(o + 1) << 8) | (view.getInt8(o + 2) << 16))) / 8388608,
    "1:32": (o) => view.getInt32(o, true) / 2147483648,
    "3:32": (o) => view.getFloat32(o, true),
    "3:64": (o) => view.getFloat64(o, true),
  }[`${code}:${bits}`];
  if (!read) throw new Error(`unsupported WAVE encoding (format ${code}, ${bits} bits)`);
  const samples = new Float32Array(frames);
  for (let i = 0; i < frames; i++) {
    let sum = 0;
    for (let c = 0; c < channels; c++) sum += read(data.at + (i * channels + c) * width);
    samples[i] = sum / channels;
  }
  return { sampleRate: format.sampleRate, samples };
}
