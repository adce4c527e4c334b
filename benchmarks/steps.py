"""Every way of computing the step, timed on the end chunks of sweep files: the data behind the step's cost model.

For each sweep file, each static group's largest chunks at its smallest and largest rung of
training slots (the chunks `plan.ends` names for --step tuned) are timed in every formulation and
layout that `tuning.candidates` lists, as `tuning.time_way` times them (the last segment,
compiled and warmed first, best of two). One JSON line per chunk goes to --out as it is timed.
--report prints, per timed chunk, the cost model's pick (`grokjax.engine.costmodel`) against the fastest.

    python -m benchmarks.steps sweeps/quickstart.toml sweeps/bench/grid64.toml --out steps.jsonl
    python -m benchmarks.steps --report steps.jsonl
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time

from grokjax.config.sweep_file import load
from grokjax.core.types import Static
from grokjax.engine import costmodel, machine, plan, runs_table, tuning
from grokjax.engine.runner import padded_size


def end_chunks(chunks: list[plan.Chunk]) -> list[plan.Chunk]:
    """Per static group, the largest chunk of its smallest and of its largest rung."""
    out = []
    for _, group in _by_group(chunks).items():
        rungs = sorted({c.static.train_slots for c in group}, key=lambda r: r or 10**9)
        for rung in dict.fromkeys((rungs[0], rungs[-1])):
            out.append(max((c for c in group if c.static.train_slots == rung), key=lambda c: len(c.runs)))
    return out


def _by_group(chunks: list[plan.Chunk]) -> dict:
    groups: dict = {}
    for c in chunks:
        groups.setdefault(dataclasses.replace(c.static, train_slots=0, formulation="", run_block=0, devices=0), []).append(c)
    return groups


def report(path: str, platform: str = "cpu", devices: int = 2) -> None:
    """A markdown row per timed chunk: the fastest way, the cost model's pick, and the pick's time over the fastest."""
    print("| sweep file | runs | p | width | slots | batch | fastest | cost model | its time / fastest |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    ratios = []
    for line in open(path):
        r = json.loads(line)
        static = Static(**{k: tuple(v) if isinstance(v, list) else v for k, v in r["static"].items()})
        seconds = r["seconds"]
        pick = tuning.step_name(*costmodel.choose(static, r["runs"], platform, devices))
        best = min(seconds, key=seconds.get)
        ratios.append(seconds[pick] / seconds[best])
        print(f"| {r['file']} | {r['runs']} | {static.p} | {static.width} | {static.train_slots} | "
              f"{static.batch_size} | {best} | {pick} | {ratios[-1]:.2f} |")
    print(f"\n{len(ratios)} chunks: the pick is the fastest in {sum(x == 1 for x in ratios)}; its time over the "
          f"fastest: median {sorted(ratios)[len(ratios) // 2]:.2f}, worst {max(ratios):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="*")
    parser.add_argument("--out")
    parser.add_argument("--report", metavar="JSONL", help="print the cost model's picks against the timings in JSONL")
    args = parser.parse_args()
    if args.report:
        return report(args.report)
    tuning.split_cpu()
    for path in args.files:
        runs = runs_table.expand(load(path))
        for chunk in end_chunks(plan.plan(runs, path, machine.local(), None, step="gather")):
            size = len(chunk.runs)
            hp = runs_table.hparams(chunk.runs, pad_to=padded_size(size))
            forms, layouts = tuning.candidates(chunk.static, size)
            seconds = {}
            for form in forms:
                for layout in layouts:
                    name = tuning.step_name(form, *layout)
                    seconds[name] = round(tuning.time_way(chunk.static, hp, size, name), 6)
            record = {"file": path, "runs": size, "static": dataclasses.asdict(chunk.static), "seconds": seconds,
                      "cpu": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d")}
            with open(args.out, "a") as f:
                f.write(json.dumps(record, default=str) + "\n")
            print(path, size, chunk.static.train_slots, min(seconds, key=seconds.get), flush=True)


if __name__ == "__main__":
    main()
