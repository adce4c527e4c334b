"""`grokjax sweep FILE`: one command from a sweep file to Parquet results and a phase map."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from grokjax.config.sweep_file import ConfigError

DESCRIPTION = """\
grokjax: vectorized sweeps of grokking experiments (Doshi et al., "To Grok or Not to Grok").
Thousands of small training runs are vmapped into one compiled JAX program per
static configuration; results go to Parquet and end in a phase diagram."""

SWEEP_HELP = """\
Run every run of a sweep file and write results/<name>/runs.parquet (one row per
run: config, final metrics, phase), curves.parquet (one row per run and logged
step), sweep.toml (the resolved config, to run again), the charts
phase_diagram, accuracy and curves as .html and .png, and explore.html (see
grokjax explore).

For the paper's 2-layer mlp it also writes neurons.parquet (per-neuron IPR) and
params/ (the trained weights, for grokjax prune; --no-params skips them).

A sweep file has tables [task], [model], [train], [phases] and [sweep], whose
keys are axes: a list of values or {start = .., stop = .., num = ..}. The grid is
their product. docs/sweep-files.md lists every key."""

SWEEP_EXAMPLES = """\
examples:
  grokjax sweep sweeps/quickstart.toml
  grokjax sweep sweeps/quickstart.toml --set train.steps=200 --set sweep.weight_decay=[0,5] --out results/short
  grokjax sweep sweeps/doshi_fig3_wd.toml --out /scratch/fig3 --chunk-size 256
  grokjax sweep sweeps/doshi_fig3_wd.toml --coordinator 10.0.0.1:9876 --num-processes 2 --process-id 0"""


REFINE_HELP = """\
Refine the phase boundaries of a finished sweep's folder: find neighbouring cells
of the phase diagram that disagree (different majority phases, or seeds agreeing
less than 75%), propose up to N new runs at their midpoints in the heatmap's axes
(data and corruption fraction, per value of the other axes; twice the seeds where
agreement is low), train them into the same folder (runs.parquet grows; run_ids
stay unique; the provenance lists the rounds) and redraw the charts, whose phase
diagram then shows cells of varying size. N is spread over K rounds, each
proposed from the runs before it. Running it again refines further; a round
stopped by Ctrl-C or a kill is resumed by running the command again."""

REFINE_EXAMPLES = """\
examples:
  grokjax refine results/quickstart --budget 60
  grokjax refine results/quickstart --budget 120 --rounds 3"""

PRUNE_EXAMPLES = """\
examples:
  grokjax prune results/quickstart --where "weight_decay == 0 and phase == 'coexistence' and corruption_fraction > 0"
  grokjax prune results/doshi_fig1 --order low"""


def add_training_options(command: argparse.ArgumentParser) -> None:
    """The options of the commands that train chunks (sweep, refine)."""
    command.add_argument("--chunk-size", type=int, metavar="N", help="runs per compiled call (default: fit device memory)")
    command.add_argument("--no-progress", action="store_true", help="no progress bar")
    command.add_argument("--no-plots", action="store_true", help="skip the HTML and PNG charts")
    command.add_argument("--checkpoint-every", type=int, default=10, metavar="K",
                         help="checkpoint a chunk's state every K logged steps, so a kill loses at most K "
                         "segments (default 10; 0: only on Ctrl-C)")
    add_wait_option(command)


def add_axis_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--x", metavar="COLUMN", help="the phase diagram's x: a numeric column the sweep varies "
                         "(default: the sweep file's [plot] x, else data_fraction)")
    command.add_argument("--y", metavar="COLUMN", help="its y (default: [plot] y, else corruption_fraction)")


def add_wait_option(command: argparse.ArgumentParser) -> None:
    """--wait, for the commands that write a results folder (one writer at a time: `grokjax.store.lock`)."""
    command.add_argument("--wait", action="store_true",
                         help="if another command is writing the results folder, wait for it to finish "
                         "(default: refuse, naming it)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grokjax", description=DESCRIPTION)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    sweep = commands.add_parser(
        "sweep",
        help="run a sweep file and write its Parquet results",
        description=SWEEP_HELP,
        epilog=SWEEP_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep.add_argument("file", metavar="FILE", help="the sweep file (TOML), e.g. sweeps/quickstart.toml")
    sweep.add_argument("--out", metavar="DIR", help="results folder (default: results/<name>)")
    sweep.add_argument(
        "--set",
        dest="overrides",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="override a key of the file, e.g. train.steps=50 or sweep.weight_decay=[0,5] (repeatable)",
    )
    add_training_options(sweep)
    sweep.add_argument("--no-params", action="store_true", help="do not store the trained weights (params/)")
    sweep.add_argument("--overwrite", action="store_true",
                       help="replace the results of another config in the --out folder (otherwise refused)")
    sweep.add_argument("--restart", action="store_true",
                       help="train every chunk again (by default, a sweep resumes: finished chunks are kept)")
    sweep.add_argument("--step", metavar="HOW",
                       help="how to compute the training step: auto (default, or $GROKJAX_STEP; picked from each "
                       "chunk's shape by a cost model, so the numbers never depend on timing), tuned (the fastest, "
                       "timed once per machine and shape; the numbers then depend on which way won), or gather, "
                       "onehot or grid with an optional :BLOCK (runs "
                       "vectorized together; 0 all, 1 one at a time) and @DEVICES (the local devices a chunk's "
                       "runs are split over; default all; on CPU one per core), e.g. gather:8 or gather:8@1")
    hosts = sweep.add_argument_group(
        "several processes (hosts)",
        "Start the same command once per process: each runs its share of the chunks on its own\n"
        "devices and writes its own part files. Under Slurm (or another cluster JAX detects),\n"
        "--distributed alone is enough; docs/gpu.md shows an sbatch script.",
    )
    hosts.add_argument("--coordinator", metavar="HOST:PORT", help="address of process 0, e.g. 10.0.0.1:1234")
    hosts.add_argument("--num-processes", type=int, metavar="N", help="how many processes take part")
    hosts.add_argument("--process-id", type=int, metavar="I", help="this process's number, 0 .. N-1")
    hosts.add_argument("--distributed", action="store_true",
                       help="join a multi-process sweep, with JAX's cluster auto-detection filling in what is not given")
    refine = commands.add_parser(
        "refine",
        help="add runs where neighbouring cells of the phase diagram disagree",
        description=REFINE_HELP,
        epilog=REFINE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    refine.add_argument("folder", metavar="RESULTS_DIR", help="a finished sweep's results folder")
    refine.add_argument("--budget", type=int, required=True, metavar="N", help="new runs at most, over all rounds")
    refine.add_argument("--rounds", type=int, default=1, metavar="K", help="rounds to spread them over (default 1)")
    add_training_options(refine)
    plot = commands.add_parser(
        "plot",
        help="draw a results folder's charts from its Parquet files",
        description="Write phase_diagram, accuracy and curves as .html (self-contained, opens offline) "
        "and .png, and explore.html, into RESULTS_DIR, from its Parquet files alone.",
    )
    plot.add_argument("folder", metavar="RESULTS_DIR", help="a results folder, e.g. results/quickstart")
    add_axis_options(plot)
    add_wait_option(plot)
    explore = commands.add_parser(
        "explore",
        help="write one offline page of linked views to explore a results folder",
        description="Write RESULTS_DIR/explore.html: one self-contained page (opens offline) with the phase "
        "diagram; a click on a cell shows its runs' training curves, its neurons' IPR histogram and its periodic "
        "neurons' dominant frequencies; shift-click adds cells; hovering shows a cell's config and accuracies. "
        "grokjax sweep and grokjax plot write it too.",
    )
    explore.add_argument("folder", metavar="RESULTS_DIR", help="a results folder, e.g. results/quickstart")
    explore.add_argument("--out", metavar="FILE", help="write the page here instead (default: RESULTS_DIR/explore.html)")
    add_axis_options(explore)
    add_wait_option(explore)
    prune = commands.add_parser(
        "prune",
        help="prune neurons in IPR order and record accuracies (Figure 6)",
        description="For the chosen runs (2-layer mlp, weights stored in params/), remove neurons one at a "
        "time in IPR order and record test, clean-train and corrupted-train accuracy and losses against the "
        "fraction pruned. Writes RESULTS_DIR/pruning.parquet and the chart pruning (.html, .png).",
        epilog=PRUNE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prune.add_argument("folder", metavar="RESULTS_DIR", help="a results folder with params/")
    prune.add_argument("--order", choices=("low", "high", "both"), default="both",
                       help="remove the lowest-IPR neurons first, the highest first, or both (default)")
    prune.add_argument("--where", metavar="QUERY", help='a query on runs.parquet, e.g. "weight_decay == 0" '
                       "(docs/expressions.md: what a query may hold)")
    add_wait_option(prune)
    info = commands.add_parser(
        "info",
        help="print what made a results folder",
        description="Print a results folder's provenance: config hash, sweep file and overrides, versions, "
        "device, start and end time, chunks, and how many runs finished ok or diverged.",
    )
    info.add_argument("folder", metavar="RESULTS_DIR", help="a results folder, e.g. results/quickstart")
    check = commands.add_parser(
        "check",
        help="check the paper's claims ([[expect]]) on a results folder",
        description="Evaluate the [[expect]] entries of a results folder's sweep.toml (or of --file) on its "
        "runs.parquet and print each claim, held or failed, with the numbers behind it. Exit status: 0 when "
        "every claim holds, 1 when one fails, 2 when the folder or the entries cannot be read.",
    )
    check.add_argument("folder", metavar="RESULTS_DIR", help="a results folder, e.g. results/quickstart")
    check.add_argument("--file", metavar="FILE", help="take the [[expect]] entries from this sweep file instead")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command in TRAINING:
        import grokjax

        grokjax.configure()  # one CPU device per core, the compilation cache: the command's, not the library's
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt as err:
        if args.command not in TRAINING:
            raise
        where = f" ({err})" if str(err) else ""
        again = "the round" if args.command == "refine" else "(--restart starts over)"
        print(f"grokjax: interrupted{where}; what was trained is kept: run the same command again to resume "
              f"{again}", file=sys.stderr)
        return 130
    except (OSError, ValueError, KeyError) as err:  # ConfigError and lock.FolderInUse are ValueErrors, as pyarrow's are
        if args.command in TRAINING and not isinstance(err, (ConfigError, OSError)):
            raise  # not bad input but a fault: its traceback is what helps
        print(error_line(args, err), file=sys.stderr)
        return 2


def error_line(args: argparse.Namespace, err: Exception) -> str:
    """The one line a refused command prints: what was wrong, where, and what is allowed (never a traceback)."""
    if isinstance(err, OSError) and args.command in TRAINING:  # an unwritable or full output folder
        where = f"{err.filename}: " if err.filename else ""
        return (f"grokjax: error: cannot write the results: {where}{err.strerror or err}; the files written before "
                "are intact, and finished chunks are kept for a resume")
    if args.command != "explore":
        return f"grokjax: error: {err.args[0] if isinstance(err, KeyError) else err}"
    reason = str(err).strip().splitlines()[0].removeprefix(f"{args.folder} ").removeprefix(f"{args.folder}: ")
    if isinstance(err, OSError) and err.strerror:
        reason = f"{err.filename}: {err.strerror}"
    elif isinstance(err, FileNotFoundError):  # pyarrow's: the path alone
        reason = f"{reason}: no such file"
    return f"grokjax explore: {args.folder}: {reason}"


def sweep(args: argparse.Namespace) -> int:
    """`grokjax sweep FILE`: train every run of a sweep file, write its tables and charts, print the summary."""
    # Imported here so that --help and argument errors answer without loading JAX.
    from grokjax.engine import sweep as sweeping
    from grokjax.summary import report

    distributed(args)
    outcome = sweeping.run(
        args.file,
        out=args.out,
        overrides=args.overrides,
        chunk_size=args.chunk_size,
        progress=not args.no_progress,
        plots=not args.no_plots,
        keep_params=not args.no_params,
        overwrite=args.overwrite,
        restart=args.restart,
        checkpoint_every=args.checkpoint_every,
        step=args.step,
        wait=args.wait,
    )
    import jax

    if jax.process_index() > 0:
        print(f"Process {jax.process_index()} of {jax.process_count()} done; results (all parts): {outcome.folder}/")
        return 0
    print(report.summary(outcome.results))
    has_neurons = len(outcome.results.neurons) > 0
    charts = ""
    if not args.no_plots:
        from grokjax.charts.drawing import chart_names

        names = ", ".join(chart_names(outcome.results.runs, outcome.results.neurons))
        charts = f"; charts: {names} (.html, .png), explore.html"
    files = "runs.parquet, curves.parquet, " + ("neurons.parquet, " if has_neurons else "") + "sweep.toml"
    print(f"Results: {outcome.folder}/ ({files}{charts})")
    return 0


def distributed(args: argparse.Namespace) -> None:
    """Call jax.distributed.initialize when the command line asks for several processes."""
    given = {"--coordinator": args.coordinator, "--num-processes": args.num_processes, "--process-id": args.process_id}
    if not args.distributed and all(v is None for v in given.values()):
        return
    if not args.distributed and any(v is None for v in given.values()):
        missing = ", ".join(k for k, v in given.items() if v is None)
        raise ConfigError(f"command line: {missing} missing; give --coordinator, --num-processes and --process-id "
                          "together, or --distributed to let JAX detect the cluster")
    if args.coordinator is not None:
        host, _, port = args.coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"command line: --coordinator = {args.coordinator!r}; allowed: HOST:PORT with a port "
                              "from 1 to 65535, e.g. 10.0.0.1:1234")
    if args.num_processes is not None and args.num_processes < 1:
        raise ConfigError(f"command line: --num-processes = {args.num_processes}; allowed: an integer >= 1")
    if args.process_id is not None and args.num_processes is not None and not 0 <= args.process_id < args.num_processes:
        raise ConfigError(f"command line: --process-id = {args.process_id}; allowed: 0 to {args.num_processes - 1}")
    import jax

    try:
        jax.distributed.initialize(args.coordinator, args.num_processes, args.process_id)
    except (RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"command line: jax.distributed.initialize failed: {first}") from None


def refine(args: argparse.Namespace) -> int:
    """`grokjax refine RESULTS_DIR --budget N [--rounds K]`: new runs at the phase boundaries, into the same folder."""
    from grokjax.engine import refine as refining

    outcome, rounds = refining.run(args.folder, args.budget, args.rounds, chunk_size=args.chunk_size,
                                   progress=not args.no_progress, plots=not args.no_plots,
                                   checkpoint_every=args.checkpoint_every, wait=args.wait)
    for r in rounds:
        print(f"Round {r['round']}: {r['proposed']} runs at {r['points']} points (budget {r['budget']}), "
              f"{r['chunks_resumed']} of {r['chunks']} chunks resumed, {r['wall_time_s']:.1f} s")
    if not rounds:
        print(f"Nothing to refine: no neighbouring cells disagree where a midpoint would train a new run within "
              f"--budget {args.budget} (an uncertain cell's midpoint takes twice its seeds)")
    print(f"Results: {outcome.folder}/ ({len(outcome.results.runs)} runs"
          + ("" if args.no_plots else "; charts redrawn") + ")")
    return 0


def info(args: argparse.Namespace) -> int:
    """`grokjax info RESULTS_DIR`: what made these results, from the folder's files alone."""
    from grokjax.summary import report

    print(report.provenance(Path(args.folder)))
    return 0


def check(args: argparse.Namespace) -> int:
    """`grokjax check RESULTS_DIR`: the sweep file's claims evaluated again on the results."""
    from grokjax.config.sweep_file import load
    from grokjax.store import results
    from grokjax.summary import expect

    folder = args.folder
    res = results.load(folder)
    config = load(args.file if args.file is not None else Path(folder) / "sweep.toml")
    expect.validate(config.source, config.expect, res.runs, config.analysis.progress)
    if not config.expect:
        print(f"{config.source}: no [[expect]] entries to check")
        return 0
    records = expect.evaluate(config.expect, res.runs)
    held = sum(r["passed"] for r in records)
    print(f"{folder}: {held} of {len(records)} claims held ({config.source})")
    print("\n".join(expect.lines(records)))
    return 0 if held == len(records) else 1


def plot(args: argparse.Namespace) -> int:
    """`grokjax plot RESULTS_DIR [--x COLUMN] [--y COLUMN]`: charts from the Parquet files alone."""
    from grokjax.charts import drawing
    from grokjax.store import lock, results

    folder = args.folder
    with lock.hold(folder, f"grokjax plot {folder}", args.wait, create=False):
        res = results.load(folder)
        axes = heatmap_axes(folder, args, res.runs, res.meta)
        for path in drawing.write_all(folder, res.runs, res.curves, res.neurons, axes):
            print(path)
    return 0


def heatmap_axes(folder: str, args: argparse.Namespace, runs: Any, meta: dict) -> tuple[str, str] | None:
    """The heatmap's axes: --x and --y where given, else the folder's [plot]; one line if the runs cannot have them."""
    from grokjax.summary import cells

    chosen = cells.chosen_axes(meta) or ("", "")
    axes = (args.x or chosen[0], args.y or chosen[1])
    problem = cells.axes_problem(runs, axes)
    if problem:
        raise ConfigError(f"{folder}: {problem.replace('plot.', '--')}")
    return axes if any(axes) else None


def explore(args: argparse.Namespace) -> int:
    """`grokjax explore RESULTS_DIR`: the page of linked views, from the Parquet files alone."""
    from grokjax.charts import explore as page
    from grokjax.store import lock, results

    folder, out = args.folder, args.out
    if not Path(folder).is_dir():
        raise ConfigError(f"{folder}: no such folder")
    if out is not None and not Path(out).resolve().parent.is_dir():
        raise ConfigError(f"{folder}: --out {out}: its folder does not exist")
    with lock.hold(folder, f"grokjax explore {folder}", args.wait, create=False):
        res = results.load(folder)
        print(page.write(folder, out, heatmap_axes(folder, args, res.runs, res.meta)))
    return 0


def prune(args: argparse.Namespace) -> int:
    """`grokjax prune RESULTS_DIR`: pruning curves of the chosen runs, to pruning.parquet and a chart."""
    from grokjax.charts import figures
    from grokjax.engine import pruning
    from grokjax.store import lock, results

    folder = args.folder
    with lock.hold(folder, f"grokjax prune {folder}", args.wait, create=False):
        curves = pruning.prune(folder, args.order, args.where)
        if curves.empty:
            raise ValueError(f"{folder}: no chosen run can be pruned (none matches, or none is of a model with without_units and no BatchNorm, on a cyclic task: docs/extending.md)")
        results.write_pruning(folder, curves)
        chart = figures.pruning_curves(curves)
        for kind in ("html", "png"):
            figures.save(chart, Path(folder) / f"pruning.{kind}")
    summary = pruning.summary(curves)
    print(summary)
    print(f"Results: {folder}/pruning.parquet, pruning.html, pruning.png")
    return 0


TRAINING = ("sweep", "refine")  # the commands that train: interrupted, they resume; their faults keep a traceback
COMMANDS = {"sweep": sweep, "refine": refine, "plot": plot, "explore": explore, "prune": prune, "info": info,
            "check": check}

if __name__ == "__main__":
    sys.exit(main())
