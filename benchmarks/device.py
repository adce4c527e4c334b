"""`python -m benchmarks.device --out DIR [SWEEP]`: all that one call on a borrowed device measures.

A borrowed GPU is lent for minutes, ten at most a call, so one command does it all, and is tested on
a CPU with a tiny sweep so that it works the first time there. SWEEP defaults to the paper's Figure 3(a),
sweeps/doshi_fig3_wd.toml. Parts (--parts, all by default), in this order:
- tests: the tests whose outcome can depend on the device (TESTS), run by pytest on it;
- matmul: a dense square matmul at each of train.precision's settings, the peak the model's FLOP/s
  are measured against;
- chunk: the sweep's largest chunk at the first precision, as `grokjax sweep` plans it (its step chosen):
  trained once (its program compiled), then warm for the model's FLOP/s,
  then two segments traced by JAX's profiler
  (`benchmarks.kernels`; the trace is kept as DIR/trace.json.gz, for Perfetto);
- sweeps: `grokjax sweep SWEEP` as a whole process, compile included, with a fresh compilation
  cache, once per precision (--precisions); with --warm the first precision again, its cache warm;
- precision: each run's phase at every precision beside its phase at the reference (--reference, a
  float32 results folder; by default DIR/float32, when that precision was swept).
DIR gets suite.json, rewritten as each part ends (a call cut off at its time limit keeps what
finished), Parquet tables (tests, matmul, sweeps, phases), each sweep's results folder DIR/<precision>/
and each process's output, DIR/<part or precision>.log. A part that fails is recorded with its last
line of output and the next part runs.

Every part runs in a process of its own and this one never opens the device: JAX takes most of a
GPU's memory when a process first uses it, and `grokjax sweep` sizes its chunks by the memory free.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks import bench, kernels
from grokjax.config.sweep_file import load
from grokjax.core.training import PRECISIONS
from grokjax.engine import plan as planning
from grokjax.engine import runner, runs_table, sweep, tuning
from grokjax.engine.machine import local as local_machine
from grokjax.store import cache, files, results
from grokjax.store.provenance import device_info, versions

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("tests", "matmul", "chunk", "sweeps", "precision")
SWEEP = "sweeps/doshi_fig3_wd.toml"
TESTS = (  # each can pass on a CPU and fail on a GPU: reductions, batched matmuls, atomics, the compile cache
    "tests/core/test_train.py::test_vmapped_run_equals_run_alone",
    "tests/core/test_train.py::test_a_second_run_gives_identical_results",
    "tests/core/test_train.py::test_changing_per_run_values_never_recompiles",
    "tests/core/test_train.py::test_precision_settings",
    "tests/core/test_train.py::test_gathered_training_slots_give_the_masked_full_grid_gradient",
    "tests/engine/test_sweep.py::test_chunking_and_padding_do_not_change_results",
    # Several devices, simulated on the host's CPU (a one-GPU machine has no second device to split over).
    "tests/engine/test_scale.py::test_runs_split_over_two_devices_or_kept_on_one_give_the_single_device_results",
)
KEYS = ["run_id", "data_fraction", "corruption_fraction", "weight_decay", "seed"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.device", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", help=f"sweep file (default: {SWEEP})")
    parser.add_argument("--out", metavar="DIR", help="folder for suite.json, the tables and the results (required)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--charts", action="store_true", help="the sweeps draw their charts")
    arguments(parser)
    return run(parser.parse_args(argv))


def arguments(parser: argparse.ArgumentParser) -> None:
    """The suite's own options."""
    suite = parser.add_argument_group("parts")
    suite.add_argument("--parts", default=",".join(PARTS), help=f"which, comma-separated (default: {','.join(PARTS)})")
    suite.add_argument("--precisions", default=",".join(PRECISIONS),
                       help="train.precision of each sweep, comma-separated (default: float32,tf32,bfloat16)")
    suite.add_argument("--reference", metavar="DIR", help="float32 results to compare phases with (default: DIR/float32)")
    suite.add_argument("--warm", action="store_true", help="sweep the first precision again, its cache warm")
    suite.add_argument("--tests", help="pytest node ids, comma-separated (default: the device-dependent tests)")
    suite.add_argument("--matmul-seconds", type=float, default=3.0, help="time per matmul precision (default 3)")
    suite.add_argument("--matmul-sizes", default="", help="square sizes, comma-separated (default: by the device)")


def run(args: argparse.Namespace) -> int:
    """Every part asked for, in order, each recorded under DIR as it ends."""
    try:
        parts = split(args.parts, PARTS, "--parts")
        precisions = split(args.precisions, tuple(PRECISIONS), "--precisions")
        sizes = list(bench.matmul_sizes(args.matmul_sizes))
        if not args.out:
            raise ValueError("--out DIR is needed")
        if args.reference and not (Path(args.reference) / "runs.parquet").is_file():
            raise ValueError(f"--reference {args.reference}: no runs.parquet here; is it a grokjax results folder?")
    except ValueError as err:
        print(f"benchmarks.device: error: {err}", file=sys.stderr)
        return 2
    file = args.file or str(ROOT / SWEEP)
    overrides = [*args.overrides, f"train.precision={precisions[0]}"]
    load(file, overrides)  # a bad sweep file stops the suite before any part runs
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "command": "python -m benchmarks.device " + " ".join(sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": in_subprocess("machine", folder / "machine.log"), "sweep": file, "overrides": args.overrides,
    }
    tables: dict[str, pd.DataFrame] = {}
    for part in parts:
        start = time.perf_counter()
        if part == "tests":
            tables["tests"] = device_tests(args.tests.split(",") if args.tests else list(TESTS), folder)
            report["tests"] = tests_summary(tables["tests"])
        elif part == "matmul":
            rows = in_subprocess("matmuls", folder / "matmul.log", seconds=args.matmul_seconds, sizes=sizes)
            tables["matmul"] = pd.DataFrame(rows if isinstance(rows, list) else [])
            report["matmul"] = rows
        elif part == "chunk":
            with tempfile.TemporaryDirectory(prefix="grokjax-suite-") as tmp:  # the sweeps' cache stays cold
                report["chunk"] = in_subprocess("chunk", folder / "chunk.log", {cache.CACHE_ENV: tmp},
                                                file=file, overrides=overrides, trace=str(folder / "trace.json.gz"))
            report["chunk"] = with_fractions(report["chunk"], tables.get("matmul"), precisions[0])
        elif part == "sweeps":
            tables["sweeps"] = whole_sweeps(file, args, precisions, folder, tables.get("matmul"))
            report["sweeps"] = records(tables["sweeps"])
        elif part == "precision":
            reference = Path(args.reference) if args.reference else folder / "float32"
            tables["phases"], report["precision"] = compared(reference, folder, precisions)
        report.setdefault("part_seconds", {})[part] = round(time.perf_counter() - start, 1)
        save(folder, report, tables)
        print(summary(part, report), flush=True)
    print(f"Written: {folder / 'suite.json'}")
    return 0


def in_subprocess(function: str, log: Path, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
    """This module's function(**kwargs) in a process of its own, its JSON result read back; on failure,
    {"error": its last line of output} (the whole output is in log)."""
    code = (f"import json, sys; from benchmarks import device; "
            f"print(json.dumps(device.{function}(**json.loads(sys.argv[1]))))")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)  # benchmarks/ is not installed
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)],
                          env={**os.environ, "PYTHONPATH": path, **(env or {})},
                          capture_output=True, text=True)
    log.write_text(proc.stderr)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict[str, Any]:
    tuning.split_cpu()  # the devices a sweep sees
    return {**device_info(), "versions": versions()}


def matmuls(seconds: float, sizes: list[int]) -> list[dict[str, Any]]:
    return [{"precision": p, **bench.matmul_flops(seconds, p, tuple(sizes))} for p in PRECISIONS]


def chunk(file: str, overrides: list[str], trace: str) -> dict[str, Any]:
    """The sweep's largest chunk, planned and its step chosen as `grokjax sweep` would: trained twice (the
    second warm, for the model's FLOP/s), then profiled."""
    tuning.split_cpu()
    config = load(file, overrides)
    static, group = next(planning.groups(runs_table.expand(config)))
    chunks = sweep.planned(group, config.source, local_machine(), None, tuning.default_step())
    largest = max(chunks, key=lambda c: len(c.runs))
    hp = runs_table.hparams(largest.runs, pad_to=largest.size)
    first = bench.timed(lambda: runner.train(largest.static, hp))
    warm = bench.timed(lambda: runner.train(largest.static, hp))
    profile = bench.profiled(largest)
    shutil.copyfile(profile["trace"], trace)
    flops = bench.model_flops(largest.static, largest.runs)
    return {"runs": len(largest.runs), "size": largest.size, "train_slots": largest.static.train_slots,
            "step": profile.pop("chunk"), "first_call_s": first, "warm_s": warm,
            "run_steps_per_s": len(largest.runs) * static.steps / warm, "model_flops": flops,
            "model_flops_per_s": flops / warm, "profile": {**profile, "trace": trace}}


def with_fractions(figures: dict[str, Any], matmul: pd.DataFrame | None, precision: str) -> dict[str, Any]:
    """The model's FLOP/s over the dense matmul's at tf32 (the GPU target's yardstick) and at the run's own precision."""
    if "error" in figures or matmul is None or matmul.empty:
        return figures
    rates = dict(zip(matmul.precision, matmul.flops_per_s))
    return {**figures, **{f"fraction_of_{p}_matmul": figures["model_flops_per_s"] / rates[p] for p in {"tf32", precision}}}


def split(value: str, allowed: tuple[str, ...], flag: str) -> list[str]:
    chosen = [v.strip() for v in value.split(",") if v.strip()]
    wrong = [v for v in chosen if v not in allowed]
    if wrong or not chosen:
        raise ValueError(f"{flag} {value!r}: choose from {', '.join(allowed)}")
    return chosen


def device_tests(node_ids: list[str], folder: Path) -> pd.DataFrame:
    """One row per test case: its outcome on this machine's default device, its seconds, what failed."""
    xml = folder.resolve() / "tests.xml"  # pytest runs in the repository's root
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}",
                           *node_ids], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    (folder / "tests.log").write_text(proc.stdout)
    if not xml.is_file():  # pytest stopped before any test (no tests folder, a bad node id)
        return pd.DataFrame([{"test": " ".join(node_ids), "outcome": "error", "seconds": 0.0,
                              "message": (proc.stdout.strip().splitlines() or ["?"])[-1]}])
    rows = []
    for case in ET.parse(xml).getroot().iter("testcase"):
        failed = next((c for c in case if c.tag in ("failure", "error", "skipped")), None)
        rows.append({"test": f"{case.get('classname')}::{case.get('name')}",
                     "outcome": "passed" if failed is None else failed.tag,
                     "seconds": float(case.get("time", 0.0)),
                     "message": "" if failed is None else (failed.get("message") or "")[:500]})
    xml.unlink()
    return pd.DataFrame(rows)


def tests_summary(tests: pd.DataFrame) -> dict[str, Any]:
    return {"passed": int((tests.outcome == "passed").sum()), "of": len(tests),
            "not_passed": tests.loc[tests.outcome != "passed", ["test", "outcome", "message"]].to_dict("records")}


def whole_sweeps(file: str, args: argparse.Namespace, precisions: list[str], folder: Path,
                 matmul: pd.DataFrame | None) -> pd.DataFrame:
    """Wall seconds of `grokjax sweep` as whole processes, one per precision, from a fresh compilation cache."""
    runs = runs_table.expand(load(file, args.overrides))
    flops = sum(bench.model_flops(static, group) for static, group in planning.groups(runs))
    rows = []
    with tempfile.TemporaryDirectory(prefix="grokjax-suite-") as tmp:
        env = {**os.environ, cache.CACHE_ENV: str(Path(tmp) / "cache")}
        todo = [(p, "cold") for p in precisions] + ([(precisions[0], "warm")] if args.warm else [])
        for precision, cache_state in todo:
            out = folder / precision
            command = [sys.executable, "-m", "grokjax", "sweep", file, *(f"--set={s}" for s in args.overrides),
                       f"--set=train.precision={precision}", "--out", str(out), "--no-progress",
                       *([] if args.charts else ["--no-plots"]), *(["--restart"] if cache_state == "warm" else [])]
            row = {"precision": precision, "cache": cache_state, "runs": len(runs), "charts": args.charts,
                   **logged_wall(command, env, folder / f"{precision}{'-warm' if cache_state == 'warm' else ''}.log")}
            if row["returncode"] == 0:
                meta = results.read_meta(out / "runs.parquet")
                row.update(in_process_s=meta["wall_time_s"], run_steps_per_s=meta["run_steps_per_s"],
                           chunks=meta["chunks"], compiled_programs=meta["compiled_programs"],
                           step=json.dumps(meta["step"]), model_flops=flops,
                           model_flops_per_s=flops / meta["wall_time_s"])
                row = with_fractions(row, matmul, precision)
            rows.append(row)
    return pd.DataFrame(rows)


def logged_wall(command: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Wall seconds and exit status of a command run to its end, its output kept in log."""
    start = time.perf_counter()
    with log.open("w") as out:
        code = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    return {"wall_s": round(time.perf_counter() - start, 2), "returncode": code}


def compared(reference: Path, folder: Path, precisions: list[str]) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Each run's phase at each precision beside the reference's, and how many differ."""
    if not (reference / "runs.parquet").is_file():
        return pd.DataFrame(), {"reference": f"{reference}: no runs.parquet (was float32 swept, did it fail?)", "runs": 0}
    table = results.load(reference).runs[[*KEYS, "phase"]].rename(columns={"phase": "phase_reference"})
    counts: dict[str, Any] = {"reference": str(reference), "runs": len(table)}
    for precision in precisions:
        if not (folder / precision / "runs.parquet").is_file():
            counts[precision] = "not swept"
            continue
        other = results.load(folder / precision).runs[[*KEYS, "phase"]].rename(columns={"phase": f"phase_{precision}"})
        table = table.merge(other, on=KEYS, how="left", validate="one_to_one")
        counts[precision] = {"differ": int((table[f"phase_{precision}"] != table.phase_reference).sum()),
                             "swept": int(table[f"phase_{precision}"].notna().sum())}
    return table, counts


def save(folder: Path, report: dict[str, Any], tables: dict[str, pd.DataFrame]) -> None:
    for name, table in tables.items():
        if not table.empty:
            results.write_parquet(folder / f"{name}.parquet", table)
    text = json.dumps(report, indent=2) + "\n"
    files.atomic_write(folder / "suite.json", lambda path: path.write_text(text))


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A table's rows as JSON objects; a missing figure (NaN: a model whose FLOPs are not counted) is null."""
    return json.loads(frame.to_json(orient="records"))


def summary(part: str, report: dict[str, Any]) -> str:
    m, figures = report["machine"], report.get(part)
    head = f"[{part}, {report['part_seconds'][part]:.0f} s on {m.get('device_kind', '?')} x{m.get('device_count', '?')}]"
    if isinstance(figures, dict) and "error" in figures:
        return f"{head} failed: {figures['error']}"
    if part == "tests":
        return "\n".join([f"{head} {figures['passed']} of {figures['of']} tests passed",
                          *(f"  {f['outcome']}: {f['test']}: {f['message'][:200]}" for f in figures["not_passed"])])
    if part == "matmul":
        return head + " dense matmul: " + ", ".join(f"{r['precision']} {r['flops_per_s'] / 1e12:,.2f} TFLOP/s "
                                                   f"(size {r['size']})" for r in figures)
    if part == "chunk":
        return (f"{head} {figures['runs']} runs ({figures['step']}): first call {figures['first_call_s']:.1f} s, "
                f"{figures['warm_s']:.1f} s warm, {figures['run_steps_per_s']:,.0f} run-steps/s{fraction(figures)}\n"
                + kernels.summary({**figures["profile"], "chunk": figures["step"]}))
    if part == "sweeps":
        lines = [head]
        for r in figures:
            line = f"  {r['precision']} ({r['cache']} cache): {r['wall_s']:.1f} s, exit {r['returncode']}"
            if r["returncode"] == 0:
                line += (f"; training {r['in_process_s']:.1f} s, {r['run_steps_per_s']:,.0f} run-steps/s, "
                         f"{r['compiled_programs']} programs{fraction(r)}")
            lines.append(line)
        return "\n".join(lines)
    return head + f" phases differing from {figures['reference']} ({figures['runs']} runs): " + ", ".join(
        f"{k} {v if isinstance(v, str) else v['differ']}" for k, v in figures.items() if k not in ("reference", "runs"))


def fraction(figures: dict[str, Any]) -> str:
    share = figures.get("fraction_of_tf32_matmul")
    return "" if share is None else f", model FLOP/s {share:.0%} of the dense tf32 matmul's"


if __name__ == "__main__":
    sys.exit(main())
