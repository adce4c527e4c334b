"""The paper's way of training a run, in PyTorch: what grokjax's speed is measured against.

Written as the authors' code is (d-doshi/Grokking, `utils/models.py` `fcn` and
`utils/optimization.py` `train_one_epoch_grokking`): full batch, the concatenated
one-hot input through nn.Linear(2p, N), x², nn.Linear(N, p), nn.MSELoss against one-hot
targets, torch.optim.AdamW, and the train and test accuracies and test loss at every
logged step. It imports nothing of grokjax (nor JAX), so that

    python benchmarks/paper_loop.py SPEC.json

times PyTorch alone, as the authors' scripts run; SPEC.json is a list of groups, each
{"setting": {...static fields...}, "runs": [{...per-run fields...}, ...]} (`benchmarks.bench` writes it).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

PAPER = {"model": "mlp", "depth": 2, "activation": "quadratic", "loss": "mse", "optimizer": "adamw", "batch_size": 0,
         "task": "modular_addition"}


def loop(setting: dict[str, Any]) -> Callable[[dict[str, Any]], None] | str:
    """A function that trains one run (a dict of its fields) as the paper's code does, or why there is none."""
    try:
        import torch
    except ImportError:
        return "torch is not installed (pip install torch)"
    if any(setting[k] != v for k, v in PAPER.items()):
        return "the PyTorch loop is the paper's setting only: 2-layer quadratic mlp, mse, adamw, full batch, addition"
    p, width, steps, log_every = setting["p"], setting["width"], setting["steps"], setting["log_every"]
    pairs = torch.arange(p * p)
    inputs = torch.cat([torch.nn.functional.one_hot(pairs // p, p), torch.nn.functional.one_hot(pairs % p, p)], 1).float()
    labels = (pairs // p + pairs % p) % p

    def one(run: dict[str, Any]) -> None:
        gen = torch.Generator().manual_seed(int(run["data_seed"]))
        order = torch.randperm(p * p, generator=gen)
        train_idx, test_idx = order[: run["n_train"]], order[run["n_train"]:]
        x_train, x_test = inputs[train_idx], inputs[test_idx]
        y_train, y_test = labels[train_idx].clone(), labels[test_idx]
        y_train[: run["n_corrupt"]] = torch.randint(0, p, (int(run["n_corrupt"]),), generator=gen)
        t_train = torch.nn.functional.one_hot(y_train, p).float()
        t_test = torch.nn.functional.one_hot(y_test, p).float()
        torch.manual_seed(int(run["seed"]))
        std = 0.25**0.5 / (2 * width) ** (1 / 3)
        fc1, fc2 = torch.nn.Linear(2 * p, width, bias=False), torch.nn.Linear(width, p, bias=False)
        torch.nn.init.normal_(fc1.weight, std=std)
        torch.nn.init.normal_(fc2.weight, std=std)
        opt = torch.optim.AdamW([fc1.weight, fc2.weight], lr=float(run["learning_rate"]),
                                weight_decay=float(run["weight_decay"]), betas=tuple(setting["betas"]), eps=1e-8)
        mse = torch.nn.MSELoss()
        for step in range(1, steps + 1):
            opt.zero_grad()
            loss = mse(fc2(fc1(x_train).pow(2)), t_train)
            loss.backward()
            opt.step()
            if step % log_every == 0 or step == steps:
                with torch.no_grad():
                    train_out, test_out = fc2(fc1(x_train).pow(2)), fc2(fc1(x_test).pow(2))
                    _ = (mse(test_out, t_test).item(), (train_out.argmax(1) == y_train).sum().item(),
                         (test_out.argmax(1) == y_test).sum().item())

    return one


def main(argv: list[str]) -> int:
    """Train every run of SPEC.json once, group by group."""
    for group in json.loads(open(argv[0]).read()):
        one = loop(group["setting"])
        if isinstance(one, str):
            print(f"paper_loop: error: {one}", file=sys.stderr)
            return 2
        for run in group["runs"]:
            one(run)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
