"""The default proxy: a small GPT-style causal LM trained on a mixture's token sample.

Plain torch over numpy token arrays, no Spark: `train` takes one token array per super-cluster,
the mixture weights and the target tokens, and returns the score (the negative mean loss per
target token) with the training-loss curve. Every proxy of a search starts from the same
initial weights and the same data order (the seed), so scores differ only by the mixture.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .config import ProxyConfig


@dataclass
class ProxyResult:
    score: float
    target_loss: float
    loss_curve: list[float] = field(default_factory=list)
    tokens_trained: int = 0
    seconds: float = 0.0


def _model(cfg: ProxyConfig, vocab: int):
    import torch
    from torch import nn

    class TinyGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(vocab, cfg.d_model)
            self.pos = nn.Embedding(cfg.seq_len, cfg.d_model)
            layer = nn.TransformerEncoderLayer(cfg.d_model, cfg.n_heads, 4 * cfg.d_model, dropout=0.0,
                                               activation="gelu", batch_first=True, norm_first=True)
            self.blocks = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(cfg.d_model)
            for emb in (self.tok, self.pos):  # GPT-2's scale; N(0, 1) gives huge tied logits
                nn.init.normal_(emb.weight, std=0.02)
            self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(cfg.seq_len),
                                 persistent=False)

        def forward(self, idx):
            t = idx.shape[1]
            h = self.tok(idx) + self.pos(torch.arange(t, device=idx.device))[None]
            h = self.norm(self.blocks(h, mask=self.mask[:t, :t], is_causal=True))
            return h @ self.tok.weight.T  # tied input and output embeddings

    return TinyGPT()


def batches(pools: dict[int, np.ndarray], weights: dict[int, float], cfg: ProxyConfig,
            rng: np.random.Generator):
    """Endless (x, y) windows: each row's pool drawn by weight, its offset uniformly."""
    ids = [i for i, w in sorted(weights.items()) if w > 0]
    if not ids:
        raise ValueError("a mixture needs at least one positive weight")
    p = np.array([weights[i] for i in ids], dtype=np.float64)
    p /= p.sum()
    span = cfg.seq_len + 1
    arrays = {i: pools[i] if len(pools[i]) >= span else np.resize(pools[i], span) for i in ids}
    while True:
        rows = []
        for i in rng.choice(ids, size=cfg.batch_size, p=p):
            a = arrays[i]
            start = int(rng.integers(0, len(a) - span + 1))
            rows.append(a[start:start + span])
        block = np.stack(rows).astype(np.int64)
        yield block[:, :-1], block[:, 1:]


def target_windows(target: np.ndarray, seq_len: int) -> np.ndarray:
    span = seq_len + 1
    if len(target) < 2:
        raise ValueError("the target has fewer than 2 tokens")
    if len(target) < span:
        return target[None, :].astype(np.int64)
    n = len(target) // span
    return target[: n * span].reshape(n, span).astype(np.int64)


def train(pools: dict[int, np.ndarray], weights: dict[int, float], target: np.ndarray, vocab: int,
          cfg: ProxyConfig, seed: int, device: str = "cpu", threads: int = 1,
          choices: list | None = None) -> ProxyResult:
    """Train on the mixture; score = -(target loss), or choice accuracy when `choices` is given
    (items of (context tokens, [choice tokens], label))."""
    import torch

    started = time.perf_counter()
    torch.set_num_threads(max(1, threads))
    torch.manual_seed(seed)
    model = _model(cfg, vocab).to(device)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, cfg))
    data = batches(pools, weights, cfg, np.random.default_rng(seed))
    curve, window = [], []
    model.train()
    for step in range(cfg.steps):
        x, y = next(data)
        x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        sched.step()
        window.append(loss.item())
        if len(window) == cfg.log_every or step == cfg.steps - 1:
            curve.append(float(np.mean(window)))
            window = []
    tokens = cfg.steps * cfg.batch_size * cfg.seq_len
    if choices is not None:
        return ProxyResult(choice_loglik(model, choices, device), float("nan"), curve, tokens,
                           time.perf_counter() - started)
    target_loss = evaluate(model, target_windows(target, cfg.seq_len), cfg.batch_size, device)
    if not math.isfinite(target_loss):
        raise FloatingPointError(f"proxy diverged: target loss {target_loss}")
    return ProxyResult(-target_loss, target_loss, curve, tokens, time.perf_counter() - started)


def lr_factor(step: int, cfg: ProxyConfig) -> float:
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        done = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(done, 1.0)))
    return 1.0


def evaluate(model, windows: np.ndarray, batch_size: int, device: str) -> float:
    """Mean cross-entropy per predicted token over the windows."""
    import torch

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(windows), batch_size):
            block = torch.from_numpy(windows[i:i + batch_size]).to(device)
            logits = model(block[:, :-1])
            total += float(torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), block[:, 1:].flatten(), reduction="sum"))
            count += block[:, 1:].numel()
    return total / count


def choice_loglik(model, items: list[tuple[np.ndarray, list[np.ndarray], int]], device: str) -> float:
    """Accuracy on multiple-choice items: the choice with the highest mean log-likelihood wins."""
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for context, choices, label in items:
            scores = []
            for choice in choices:
                seq = np.concatenate([context, choice])[-(model.pos.num_embeddings + 1):]
                x = torch.from_numpy(seq[None, :-1].astype(np.int64)).to(device)
                logp = torch.log_softmax(model(x)[0], -1)
                n = min(len(choice), len(seq) - 1)
                tail = torch.from_numpy(seq[-n:].astype(np.int64)).to(device)
                scores.append(float(logp[-n:].gather(1, tail[:, None]).mean()))
            correct += int(np.argmax(scores) == label)
    return correct / max(1, len(items))
