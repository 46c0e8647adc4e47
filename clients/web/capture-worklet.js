// capture-worklet.js: the AudioWorklet side of the microphone. It mixes the input to mono and
// posts blocks of `blockSamples` samples (at the AudioContext's rate) to the page, which
// resamples them to the model's rate and runs the model (stateport.js). Nothing heavy runs here:
// the audio thread must never wait for the model.

class StateportCapture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    this.blockSamples = (options.processorOptions && options.processorOptions.blockSamples) || 1024;
    this.block = new Float32Array(this.blockSamples);
    this.fill = 0;
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data === "flush") { // the page stops: send what is left, then the end marker
        if (this.fill) this.port.postMessage(this.block.slice(0, this.fill));
        this.fill = 0;
        this.running = false;
        this.port.postMessage("flushed");
      }
    };
  }

  process(inputs) {
    const channels = inputs[0];
    if (!this.running) return false;
    if (!channels || channels.length === 0) return true; // no input connected yet
    const frames = channels[0].length;
    for (let i = 0; i < frames; i++) {
      let sum = 0;
      for (let c = 0; c < channels.length; c++) sum += channels[c][i];
      this.block[this.fill++] = sum / channels.length;
      if (this.fill === this.blockSamples) {
        this.port.postMessage(this.block, [this.block.buffer]); // transferred: no copy
        this.block = new Float32Array(this.blockSamples);
        this.fill = 0;
      }
    }
    return true;
  }
}

registerProcessor("stateport-capture", StateportCapture);
