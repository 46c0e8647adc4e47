"""The demo page in a real browser: Debian's Chromium, headless, its microphone a WAV file.

The page (written by ``stateport export --web``) is served from a local HTTP server; Chromium's
fake capture device plays a shipped clip (1 s of silence before and after, as someone pausing
before speaking), the page captures it with its AudioWorklet at the browser's own rate,
resamples it, runs the audio-in model in ONNX Runtime Web and shows the text.
"""

import functools
import http.server
import json
import os
import threading

import numpy as np
import soundfile as sf

from conftest import ASSETS, run_node

CLIP = os.path.join(ASSETS, "clips", "digits_4.wav")
TRANSCRIPT = "four five three seven zero"


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_page_transcribes_a_fake_microphone(browser, audio_in_builtin, python_tokens, tmp_path):
    from stateport.export.web import write_web_page

    site = write_web_page(tmp_path / "site", audio_in_builtin)
    x, rate = sf.read(CLIP, dtype="float32")
    pause = np.zeros(rate, np.float32)
    mic = str(tmp_path / "mic.wav")
    sf.write(mic, np.concatenate([pause, x, pause]), rate, subtype="PCM_16")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(_Quiet, directory=site["dir"]))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        listen_s = (len(x) + 2 * rate) / rate + 1.0
        stats = json.loads(run_node(["drive-page.mjs", "--url", url,
                                     "--wav", mic, "--listen-seconds", str(listen_s), "--chromium", browser],
                                    timeout=300).strip().splitlines()[-1])
    finally:
        server.shutdown()
        server.server_close()
    assert stats["error"] is None, stats
    assert stats["state"] == "stopped"
    assert stats["text"] == TRANSCRIPT, stats
    assert stats["tokens"] == python_tokens(CLIP)
    assert stats["modelBytes"] == os.path.getsize(site["model"])
    assert stats["firstPartialMs"] is not None and stats["contextRate"] > 0
    assert not [line for line in stats["log"] if line.startswith(("error", "pageerror"))], stats["log"]
