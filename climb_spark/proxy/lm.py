"""The default proxy: a small GPT-style causal LM trained on a mixture's token sample.

Plain torch over numpy token arrays, no Spark: `train` takes one token array per super-cluster,
the mixture weights and the target tokens, and returns the score (the negative mean loss per
target token) with the training-loss curve. Every proxy of a search starts from the same
initial weights and the same data order (the seed), so scores differ only by the mixture.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field

import numpy as np

from climb_spark.config import ProxyConfig


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
            rng: np.random.Generator, with_domains: bool = False):
    """Endless (x, y) windows (and each row's pool, with_domains): each row's pool drawn by
    weight, its offset uniformly."""
    ids = [i for i, w in sorted(weights.items()) if w > 0]
    if not ids:
        raise ValueError("a mixture needs at least one positive weight")
    p = np.array([weights[i] for i in ids], dtype=np.float64)
    p /= p.sum()
    span = cfg.seq_len + 1
    arrays = {i: pools[i] if len(pools[i]) >= span else np.resize(pools[i], span) for i in ids}
    while True:
        rows = []
        picked = rng.choice(ids, size=cfg.batch_size, p=p)
        for i in picked:
            a = arrays[i]
            start = int(rng.integers(0, len(a) - span + 1))
            rows.append(a[start:start + span])
        block = np.stack(rows).astype(np.int64)
        yield (block[:, :-1], block[:, 1:], picked) if with_domains else (block[:, :-1], block[:, 1:])


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
          choices: list | None = None, base: bytes | None = None) -> ProxyResult:
    """Train on the mixture; score = -(target loss), or choice accuracy when `choices` is given
    (items of (context tokens, [choice tokens], label)). With a `base` checkpoint the proxy
    continues from it, its learning rate decaying linearly to 0 (the paper's decay stage)."""
    started = time.perf_counter()
    model, curve = fit(pools, weights, vocab, cfg, seed, device, threads, base)
    tokens = cfg.steps * cfg.batch_size * cfg.seq_len
    if choices is not None:
        return ProxyResult(choice_loglik(model, choices, device), float("nan"), curve, tokens,
                           time.perf_counter() - started)
    target_loss = evaluate(model, target_windows(target, cfg.seq_len), cfg.batch_size, device)
    if not math.isfinite(target_loss):
        raise FloatingPointError(f"proxy diverged: target loss {target_loss}")
    return ProxyResult(-target_loss, target_loss, curve, tokens, time.perf_counter() - started)


def _setup(vocab: int, cfg: ProxyConfig, seed: int, device: str, threads: int, base: bytes | None = None):
    import io

    import torch

    torch.set_num_threads(max(1, threads))
    torch.manual_seed(seed)
    model = _model(cfg, vocab).to(device)
    if base is not None:
        model.load_state_dict(torch.load(io.BytesIO(base), map_location=device))
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    rest = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    if base is None:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_factor(step, cfg))
    else:
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: max(0.0, 1.0 - step / cfg.steps))
    model.train()
    return model, opt, sched


def _step(model, opt, sched, loss, cfg: ProxyConfig) -> None:
    import torch

    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    opt.step()
    sched.step()


class _Curve:
    """Training loss averaged over log_every steps."""

    def __init__(self, cfg: ProxyConfig):
        self.cfg, self.points, self.window = cfg, [], []

    def add(self, step: int, value: float) -> None:
        self.window.append(value)
        if len(self.window) == self.cfg.log_every or step == self.cfg.steps - 1:
            self.points.append(float(np.mean(self.window)))
            self.window = []


def fit(pools: dict[int, np.ndarray], weights: dict[int, float], vocab: int, cfg: ProxyConfig, seed: int,
        device: str = "cpu", threads: int = 1, base: bytes | None = None):
    """The model trained on the mixture (from `base`, a checkpoint, where given), and its
    training-loss curve."""
    import torch

    model, opt, sched = _setup(vocab, cfg, seed, device, threads, base)
    data = batches(pools, weights, cfg, np.random.default_rng(seed))
    curve = _Curve(cfg)
    for step in range(cfg.steps):
        x, y = (torch.from_numpy(a).to(device) for a in next(data))
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        _step(model, opt, sched, loss, cfg)
        curve.add(step, loss.item())
    return model, curve.points


def base_checkpoint(pools: dict[int, np.ndarray], prior: dict[int, float], vocab: int, cfg: ProxyConfig,
                    seed: int, device: str = "cpu", threads: int = 1) -> bytes:
    """The shared base of `proxy.init=base`: the proxy trained on the prior for base_steps (its
    own warmup and schedule), as torch.save bytes."""
    import io

    import torch

    model, _ = fit(pools, prior, vocab, dataclasses.replace(cfg, steps=cfg.base_steps or cfg.steps), seed,
                   device, threads)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getvalue()


@dataclass
class DoremiResult:
    weights: dict[int, float]  # the domain weights averaged over every step: DoReMi's output
    weight_curve: list[list[float]]  # the weights every log_every steps, in domain order
    reference_curve: list[float]
    proxy_curve: list[float]
    tokens_trained: int
    seconds: float


def doremi(pools: dict[int, np.ndarray], reference: dict[int, float], vocab: int, cfg: ProxyConfig, seed: int,
           device: str = "cpu", threads: int = 1, step_size: float = 1.0, smoothing: float = 1e-3) -> DoremiResult:
    """DoReMi (Xie et al. 2023): a reference model trained on the reference weights, then a
    proxy trained with Group DRO against it. Each step the batch is drawn uniformly over the
    domains; a domain's excess loss is its per-token loss above the reference's, clipped at 0;
    the domain weights take an exponentiated-gradient step (in log space, `step_size`), are
    mixed with uniform by `smoothing`, and weight the proxy's loss. The output is the weights
    averaged over all steps."""
    import torch

    started = time.perf_counter()
    ids = sorted(i for i, w in reference.items() if w > 0)
    ref_model, ref_curve = fit(pools, reference, vocab, cfg, seed, device, threads)
    ref_model.eval()
    model, opt, sched = _setup(vocab, cfg, seed, device, threads)
    data = batches(pools, {i: 1.0 for i in ids}, cfg, np.random.default_rng(seed + 1), with_domains=True)
    k = len(ids)
    alpha = torch.full((k,), 1.0 / k, dtype=torch.float64)
    total = torch.zeros(k, dtype=torch.float64)
    curve, weight_curve = _Curve(cfg), []
    for step in range(cfg.steps):
        x, y, picked = next(data)
        domain = torch.from_numpy(np.searchsorted(ids, picked)).to(device)
        x, y = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        token_loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten(),
                                                       reduction="none").view(y.shape)
        with torch.no_grad():
            ref_loss = torch.nn.functional.cross_entropy(ref_model(x).flatten(0, 1), y.flatten(),
                                                         reduction="none").view(y.shape)
        one_hot = torch.nn.functional.one_hot(domain, k).to(token_loss.dtype)  # (batch, k)
        tokens = one_hot.sum(0) * y.shape[1]
        per_domain = (one_hot * token_loss.sum(1, keepdim=True)).sum(0) / tokens.clamp(min=1)
        with torch.no_grad():
            excess = (one_hot * (token_loss - ref_loss).clamp(min=0).sum(1, keepdim=True)).sum(0)
            excess = (excess / tokens.clamp(min=1)).double().cpu()
            log_alpha = alpha.log() + step_size * excess
            alpha = (1 - smoothing) * (log_alpha - torch.logsumexp(log_alpha, 0)).exp() + smoothing / k
            total += alpha
        loss = (alpha.to(per_domain.dtype).to(device) * per_domain).sum()
        _step(model, opt, sched, loss, cfg)
        curve.add(step, loss.item())
        if (step + 1) % cfg.log_every == 0 or step == cfg.steps - 1:
            weight_curve.append(alpha.tolist())
    mean = (total / cfg.steps).numpy()
    return DoremiResult({i: float(w) for i, w in zip(ids, mean / mean.sum())}, weight_curve, ref_curve, curve.points,
                        2 * cfg.steps * cfg.batch_size * cfg.seq_len, time.perf_counter() - started)


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
