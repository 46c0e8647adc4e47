"""How well the frozen speech embedding separates FSDD's digits across speakers, before any model.

For each FSDD speaker in turn: isolated digits of the other speakers -> embeddings (the shipped
SpeechEmbedding on our frontend, every 80 ms) -> mean- and max-pooled over the recording ->
a softmax regression; accuracy on the held-out speaker's 500 recordings. This is the check
that justified building ``embedding-ctc`` (see the README's built-in model section):

    python benchmarks/embedding_probe.py

Each recording sits between 0.6 s of faint noise, so that even a short word fills a window.
A few minutes on the development machine (the embedding of ~2500 recordings on one core).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from stateport.runtime.frontend import compute_features
from stateport.train.fsdd import load_fsdd
from stateport.zoo.speech_embedding import SpeechEmbedding, frontend_config, google_log_mel

PAD_S = 0.6
SAMPLE_RATE_HZ = 16000


def pooled_embeddings(clips, model: SpeechEmbedding, *, seed: int = 0) -> np.ndarray:
    """[N, 192]: mean and max over time of each recording's embeddings."""
    rng = np.random.default_rng(seed)
    config = frontend_config()
    pad = int(PAD_S * SAMPLE_RATE_HZ)
    rows = []
    for clip in clips:
        wave = rng.normal(0.0, 1e-4, len(clip.waveform) + 2 * pad).astype(np.float32)
        wave[pad:pad + len(clip.waveform)] += clip.waveform
        logmel = google_log_mel(torch.from_numpy(compute_features(wave, config)))
        windows = logmel.unfold(0, 76, 8).permute(0, 2, 1)  # [K, 76, 32]
        with torch.no_grad():
            emb = model(windows)
        rows.append(torch.cat([emb.mean(0), emb.max(0).values]).numpy())
    return np.stack(rows)


def softmax_regression_accuracy(x_train, y_train, x_test, y_test, *, weight_decay: float = 1e-2,
                                steps: int = 500) -> float:
    """Accuracy of a multinomial logistic regression (L-BFGS, standardised inputs)."""
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    xt = torch.from_numpy((x_train - mean) / std).float()
    xs = torch.from_numpy((x_test - mean) / std).float()
    yt = torch.from_numpy(y_train).long()
    layer = torch.nn.Linear(xt.shape[1], 10)
    opt = torch.optim.LBFGS(layer.parameters(), max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(xt), yt) + weight_decay * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((layer(xs).argmax(1).numpy() == y_test).mean())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None, metavar="OUT", help="also write the accuracies as JSON")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = SpeechEmbedding().load_pretrained().eval()
    clips = load_fsdd()
    speakers = np.array([c.speaker for c in clips])
    digits = np.array([c.digit for c in clips])
    x = pooled_embeddings(clips, model)
    result = {}
    for speaker in sorted(set(speakers)):
        held = speakers == speaker
        result[speaker] = softmax_regression_accuracy(x[~held], digits[~held], x[held], digits[held])
        print(f"{speaker:>10}: {100 * result[speaker]:.1f} % of 500 isolated digits (trained on the other "
              f"{len(set(speakers)) - 1} speakers)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
