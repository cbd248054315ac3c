"""``dynascope run emergence``: train a task, store its emergence curves, print the fitted summary.

dynascope run emergence --task induction --steps 1500 --out runs/ind.zarr --json
dynascope run emergence --task icl-bursty --set burstiness=1 --out runs/b1.zarr
dynascope run emergence --task grokking --set modulus=59 --set train_fraction=0.4 --out runs/g.zarr
dynascope run emergence --task induction --clamp 0.1 --clamp-window 0:500 --out runs/clamped.zarr
"""

from __future__ import annotations

import argparse
import json

__all__ = ["add_parser", "run", "print_summary"]

TASKS = ("massive", "sparsity", "induction", "icl-bursty", "grokking")  # engine.emergence.config.TASKS


def add_parser(engines) -> None:
    """The ``emergence`` engine under ``dynascope run``."""
    em = engines.add_parser("emergence", help="activation emergence over training, with fitted emergence laws")
    em.add_argument("--task", choices=TASKS, required=True, help="what to train and measure")
    for flag, kind, text in (
        ("--layers", int, "transformer blocks"),
        ("--heads", int, "heads per block"),
        ("--width", int, "residual width (a multiple of heads)"),
        ("--steps", int, "training steps"),
        ("--lr", float, "learning rate"),
        ("--batch", int, "sequences per step"),
        ("--probe-every", int, "steps between probes"),
    ):
        em.add_argument(flag, type=kind, default=None, help=f"{text} (default: the task's)")
    em.add_argument("--seed", type=int, default=0, help="random seed")
    em.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="any other field, e.g. burstiness=1, classes=512, modulus=59, train_fraction=0.4 (repeatable)",
    )
    em.add_argument("--clamp", default="", metavar="L.H,...", help="heads whose output is clamped (intervention)")
    em.add_argument("--clamp-mode", choices=("zero", "mean"), default="zero", help="clamp to zero or the batch mean")
    em.add_argument("--clamp-window", default="", metavar="START:END", help="training steps of the clamp")
    em.add_argument("--out", required=True, help="path of the Zarr store to write (PATH.zarr)")
    em.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def config_from_args(args: argparse.Namespace):
    from engine.emergence.config import EmergenceConfig
    from explorer.cli import UsageError, _settings

    fields = {
        name: getattr(args, name)
        for name in ("layers", "heads", "width", "steps", "lr", "batch", "probe_every")
        if getattr(args, name) is not None
    }
    fields["seed"] = args.seed
    if args.clamp:
        fields["clamp"], fields["clamp_mode"] = args.clamp, args.clamp_mode
        start, sep, end = args.clamp_window.partition(":")
        if not sep or not start.strip().isdigit() or not end.strip().isdigit():
            raise UsageError(f"--clamp-window {args.clamp_window!r}: expected START:END training steps, e.g. 0:500")
        fields["clamp_start"], fields["clamp_end"] = int(start), int(end)
    base = EmergenceConfig.for_task(args.task, **fields)
    return base.replace_text(**_settings(args.set)) if args.set else base


def run(args: argparse.Namespace, t0: float) -> int:
    import time

    from engine.emergence.summary import summary
    from engine.emergence.training import EmergenceStream
    from engine.store import check_out_path, open_run
    from explorer.cli import store_stream

    cfg = config_from_args(args)
    check_out_path(args.out)
    stream = EmergenceStream(cfg)

    def report(store) -> None:
        result = summary(open_run(store.path))
        result["out"] = str(store.path)
        result["train_seconds"] = stream.train_seconds
        result["probe_seconds"] = stream.probe_seconds
        result["wall_seconds"] = time.perf_counter() - t0
        print_summary(result, args.json)

    return store_stream(stream, args.out, report)


def _fmt(x, spec: str = ".3g") -> str:
    return "-" if x is None or x != x else format(x, spec)


def print_summary(summary: dict, as_json: bool) -> None:
    from explorer.cli import _clean

    if as_json:
        print(json.dumps(_clean(summary), sort_keys=True))
        return
    print(f"run        {summary['title']}")
    print(f"status     {summary['run_status']}, {summary['steps']} steps, final loss {_fmt(summary['final_loss'])}")
    for name, value in summary["final"].items():
        print(f"{name:<10} {_fmt(value)}")
    if summary["layers"]:
        print(f"{'layer':>6} {'top/median':>11} {'at (token, dim)':>16} {'nonzero':>8} {'law fit':>14} {'R2':>6}")
        for row in summary["layers"]:
            law = row.get("law") or {}
            print(
                f"{row['layer']:>6} {_fmt(row['top_ratio'], '.1f'):>11} "
                f"{str((row['top_position'], row['top_dim'])):>16} {_fmt(row['nonzero_share'], '.3f'):>8} "
                f"{law.get('kind', '-'):>14} {_fmt(law.get('r2'), '.3f'):>6}"
            )
    for name, fit in summary["onsets"].items():
        print(
            f"onset      {name}: step {_fmt(fit.get('onset'), '.0f')} (midpoint {_fmt(fit.get('midpoint'), '.0f')}, "
            f"sharpness {_fmt(fit.get('sharpness'))}, R2 {_fmt(fit.get('r2'), '.3f')}"
            f"{', abrupt' if fit.get('abrupt') else ''})"
        )
