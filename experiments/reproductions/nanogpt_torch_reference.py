"""nanoGPT itself (PyTorch), at its README CPU settings, to measure the reference on this machine.

A compact transcription of nanoGPT's model.py and train.py logic (bias-free LayerNorm/Linear, tied
head, GPT-2 init, AdamW with 2-D-only decay, warmup + cosine, clip 1.0, random windows), so that
experiments/reproductions/nanogpt_cpu.py can be compared with the original at the same settings and the same
evaluation (200 batches instead of the README's 20). Needs PyTorch, which is not a wavejax
dependency: pip install -e ".[torch]"

    python -m experiments.reproductions.nanogpt_torch_reference --seeds 1337,0
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time

import numpy as np

B, T, L, H, D = 12, 64, 4, 4, 128
ITERS, LR, MIN_LR, WARMUP, DECAY, WD, CLIP, BETAS = 2000, 1e-3, 1e-4, 100, 2000, 0.1, 1.0, (0.9, 0.99)


def gpt_class():
    """nanoGPT's model.py at the README's CPU size (bias-free LayerNorm and Linear, tied head, GPT-2 init), as a class
    built on call so that torch is imported only when the reference runs."""
    import torch
    import torch.nn as nn
    from torch.nn import functional as F

    class LayerNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(D))

        def forward(self, x):
            return F.layer_norm(x, (D,), self.weight, None, 1e-5)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1, self.ln_2 = LayerNorm(), LayerNorm()
            self.c_attn, self.attn_proj = nn.Linear(D, 3 * D, bias=False), nn.Linear(D, D, bias=False)
            self.c_fc, self.mlp_proj = nn.Linear(D, 4 * D, bias=False), nn.Linear(4 * D, D, bias=False)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = (z.view(b, t, H, c // H).transpose(1, 2) for z in self.c_attn(self.ln_1(x)).split(D, dim=2))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, c)
            x = x + self.attn_proj(y)
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))

    class GPT(nn.Module):
        def __init__(self, vocab):
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, D), nn.Embedding(T, D)
            self.h = nn.ModuleList([Block() for _ in range(L)])
            self.ln_f = LayerNorm()
            self.lm_head = nn.Linear(D, vocab, bias=False)
            self.wte.weight = self.lm_head.weight  # tied
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, 0.0, 0.02)
            for name, p in self.named_parameters():
                if name.endswith("proj.weight"):  # nanoGPT's c_proj: residual projections
                    nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * L))

        def forward(self, idx, targets):
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block in self.h:
                x = block(x)
            logits = self.lm_head(self.ln_f(x))
            return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))

    return GPT


def lr_at(it: int) -> float:
    """train.py's get_lr: linear warmup, cosine decay to MIN_LR over DECAY iterations, then MIN_LR."""
    if it < WARMUP:
        return LR * (it + 1) / (WARMUP + 1)
    if it > DECAY:
        return MIN_LR
    return MIN_LR + 0.5 * (1.0 + math.cos(math.pi * (it - WARMUP) / (DECAY - WARMUP))) * (LR - MIN_LR)


def run(seed: int, text: str, eval_iters: int, threads: int) -> dict:
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = np.array([stoi[c] for c in text], dtype=np.int64)
    n = int(len(data) * 0.9)
    splits = {"train": torch.from_numpy(data[:n]), "val": torch.from_numpy(data[n:])}

    def get_batch(split):
        d = splits[split]
        ix = torch.randint(len(d) - T, (B,))
        return torch.stack([d[i : i + T] for i in ix]), torch.stack([d[i + 1 : i + 1 + T] for i in ix])

    model = gpt_class()(len(chars))
    params = list(model.parameters())
    opt = torch.optim.AdamW([{"params": [p for p in params if p.dim() >= 2], "weight_decay": WD},
                             {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}], lr=LR, betas=BETAS)

    @torch.no_grad()
    def val_loss():
        model.eval()
        out = torch.stack([model(*get_batch("val")) for _ in range(eval_iters)]).mean().item()
        model.train()
        return out

    t0 = time.perf_counter()
    x, y = get_batch("train")
    for it in range(ITERS):
        for group in opt.param_groups:
            group["lr"] = lr_at(it)
        loss = model(x, y)
        x, y = get_batch("train")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, CLIP)
        opt.step()
        opt.zero_grad(set_to_none=True)
    train_s = time.perf_counter() - t0
    return {"seed": seed, "val_loss": val_loss(), "train_s": train_s}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", default="1337")
    ap.add_argument("--data", default="", help="a text file (default: the tinyshakespeare copy shipped with wavejax)")
    ap.add_argument("--eval_iters", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    if args.data:
        with open(args.data, encoding="utf-8") as f:
            text = f.read()
    else:
        from wavejax.data.sources import tinyshakespeare

        text = tinyshakespeare()
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        rows.append(run(seed, text, args.eval_iters, args.threads))
        print(json.dumps(rows[-1]), flush=True)
    vals = [r["val_loss"] for r in rows]
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    print(f"\nnanoGPT (PyTorch) CPU settings, {len(rows)} seeds: val loss {statistics.mean(vals):.4f} ± {sd:.4f} "
          f"({args.eval_iters} eval batches), train time {statistics.mean(r['train_s'] for r in rows):.0f} s per run")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
