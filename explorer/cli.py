"""The ``dynascope`` command line.

    dynascope run spiking --model brunel --regime B --scale 0.2 --duration 1 --out b.zarr --json
    dynascope info b.zarr --json
    dynascope probe smollm2 --text "The cat sat on the mat." --out p.zarr

Bad input prints one line on stderr and exits with status 2; a run stopped by a numerical
blow-up keeps its stored chunks, says why, and exits with status 1.
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()  # wall_seconds counts from here: imports, build, loop, storage

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_STOPPED = 1


class UsageError(Exception):
    """Bad input: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage dump
        raise UsageError(message)


def _settings(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--set {pair!r}: expected name=value")
        out[name.strip()] = value.strip()
    return out


FIGURES = ("raster", "rates", "summary")  # explorer.export.FIGURES, without importing plotting here
FORMATS = ("png", "svg", "html", "nc")


def _build_parser() -> argparse.ArgumentParser:
    from engine.spiking.config import MODELS, REGIMES

    parser = _Parser(prog="dynascope", description="Explore the dynamics of neural networks.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="run an engine and store the run")
    engines = run.add_subparsers(dest="engine", required=True, parser_class=_Parser)
    sp = engines.add_parser("spiking", help="a LIF spiking network")
    sp.add_argument("--model", choices=MODELS, default="coba", help="network preset")
    sp.add_argument("--regime", choices=tuple(REGIMES), default="", help="Brunel (2000) panel A-D")
    sp.add_argument("--scale", type=float, default=1.0, help="network size relative to the preset")
    sp.add_argument("--duration", type=float, default=1.0, help="biological time in seconds")
    sp.add_argument("--dt", type=float, default=0.1, help="time step in ms")
    sp.add_argument("--seed", type=int, default=1, help="random seed")
    sp.add_argument("--chunk", type=float, default=None, help="biological ms per stored chunk")
    sp.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a run setting or network parameter (repeatable), e.g. g=5 eta=2",
    )
    sp.add_argument("--out", required=True, help="path of the Zarr store to write (PATH.zarr)")
    sp.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    sp.add_argument("--quiet", action="store_true", help="no progress bar")

    at = engines.add_parser("attention", help="a tiny transformer trained on Bigram-Backcopy (attention sinks)")
    at.add_argument("--task", choices=("bigram-backcopy",), default="bigram-backcopy", help="training task")
    at.add_argument("--source", choices=("shakespeare", "zipf"), default="shakespeare", help="bigram table")
    at.add_argument(
        "--attention", choices=("softmax", "relu", "gated-head", "gated-elem"), default="softmax", help="variant"
    )
    at.add_argument("--optimizer", choices=("adamw", "adam", "sgd"), default="adamw", help="optimizer")
    at.add_argument("--layers", type=int, default=2, help="transformer blocks")
    at.add_argument("--heads", type=int, default=2, help="heads per block")
    at.add_argument("--width", type=int, default=64, help="residual width (a multiple of heads)")
    at.add_argument("--length", type=int, default=32, help="tokens per sequence, BOS included")
    at.add_argument("--lr", type=float, default=None, help="learning rate (default 3e-3; 3e-2 for sgd)")
    at.add_argument("--batch", type=int, default=32, help="sequences per step")
    at.add_argument("--steps", type=int, default=1500, help="training steps")
    at.add_argument("--probe-every", type=int, default=25, help="steps between probes")
    at.add_argument("--seed", type=int, default=0, help="random seed")
    at.add_argument("--out", required=True, help="path of the Zarr store to write (PATH.zarr)")
    at.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    from explorer import emergence_cli

    emergence_cli.add_parser(engines)

    probe = sub.add_parser("probe", help="analyse a text with a pretrained model (sinks, massive activations)")
    probe.add_argument("model", choices=("smollm2",), help="smollm2: SmolLM2-135M-Instruct (the llm extra)")
    probe.add_argument("--text", required=True, help="the text to analyse")
    probe.add_argument("--out", required=True, help="path of the Zarr store to write (PATH.zarr)")
    probe.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    info = sub.add_parser("info", help="summarise a stored run, complete or not")
    info.add_argument("path", help="a run store")
    info.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    sweep = sub.add_parser("sweep", help="run a sweep on Dask and store it")
    kinds = sweep.add_subparsers(dest="sweep_kind", required=True, parser_class=_Parser)
    deg = kinds.add_parser("degeneracy", help="solution degeneracy of task-trained RNNs across a knob")
    deg.add_argument("--task", choices=("flipflop", "discrimination", "sine", "path"), default="flipflop")
    deg.add_argument(
        "--vary",
        required=True,
        metavar="KNOB=V1,V2,...",
        help="the varied knob and its values: a task knob (channels=1,2,3), hidden=32,128, gamma=0.1,1,10 "
        "(with --parameterisation mup), nuclear=0,1e-3 or l1=0,1e-4",
    )
    deg.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="fix another task field in every condition, e.g. --set channels=2 (repeatable)",
    )
    deg.add_argument("--seeds", type=int, default=8, help="networks per condition")
    deg.add_argument("--hidden", type=int, default=64, help="units per network")
    deg.add_argument("--parameterisation", choices=("standard", "mup"), default="standard", help="mup enables gamma")
    deg.add_argument("--gamma", type=float, default=1.0, help="feature-learning strength (mup)")
    deg.add_argument("--nuclear", type=float, default=0.0, help="nuclear-norm penalty on the recurrent weights")
    deg.add_argument("--l1", type=float, default=0.0, help="L1 penalty on the recurrent weights")
    deg.add_argument("--max-steps", type=int, default=8000, help="cap on training steps")
    deg.add_argument("--lr", type=float, default=1e-2, help="initial Adam learning rate (halves every 1500 steps)")
    deg.add_argument("--scheduler", help="address of an existing Dask scheduler (default: a LocalCluster)")
    deg.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    deg.add_argument("--out", required=True, help="Zarr store of the sweep (an unfinished one resumes)")
    deg.add_argument("--json", action="store_true", help="print the summary as one JSON object")

    serve = sub.add_parser("serve", help="serve the dashboards (panel serve) on 127.0.0.1")
    serve.add_argument("--address", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=5006, help="port (default 5006)")
    serve.add_argument("--open", dest="open_path", help="a stored run (spiking app) or sweep (degeneracy app) to show")
    serve.add_argument("--runs", default="runs", help="folder for the stores of live runs (default runs/)")
    serve.add_argument("--show", action="store_true", help="open a browser")

    export = sub.add_parser("export", help="export a figure or the data of a stored run")
    export.add_argument("path", help="a run store")
    export.add_argument("--figure", choices=FIGURES, default="summary", help="which figure")
    export.add_argument("--format", choices=FORMATS, default="png", help="png, svg, html (self-contained) or nc")
    export.add_argument("--out", required=True, help="file to write")
    return parser


def _clean(value):
    """JSON-safe: NaN and infinities become null."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _print_summary(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_clean(summary), sort_keys=True))
        return
    name = f"{summary.get('model')} {summary.get('regime') or ''}".strip()
    rates = ", ".join(f"{k} {v:.2f} Hz" for k, v in summary["rate_hz"].items())
    cvs = ", ".join(f"{k} {v:.2f}" for k, v in summary["cv_isi_pop"].items())
    lines = [
        f"run        {name}: {summary['n_neurons']} neurons, {summary['n_synapses']} synapses, seed {summary['seed']}",
        f"status     {summary['status']}" + (" (incomplete)" if summary["status"] != "complete" else ""),
        f"simulated  {summary['simulated_ms'] / 1000:g} s in {summary['chunks']} chunks",
        f"rates      {rates}",
        f"spikes     {summary['spikes']}",
        f"ISI CV     {summary['cv_isi']:.3f} ({cvs})",
        f"synchrony  chi {summary['synchrony']:.3f}, population Fano factor {summary['fano']:.2f}",
        f"loop       {summary['sim_seconds']:.3f} s",
    ]
    if "wall_seconds" in summary:
        lines.append(f"wall       {summary['wall_seconds']:.3f} s")
    if summary.get("reason"):
        lines.append(f"reason     {summary['reason']}")
    print("\n".join(lines))


def _summarise(ds, record: dict | None = None) -> dict:
    from engine.spiking.analysis import summary

    out = summary(ds)
    cv = out.pop("cv_isi")
    out["cv_isi"] = cv.pop("all")
    out["cv_isi_pop"] = cv
    if record is not None:
        out["status"] = record["status"]
        out["complete"] = record["complete"]
        out["interrupted"] = record["interrupted"]
        out["reason"] = record.get("reason", "")
    return out


def _cmd_run_spiking(args: argparse.Namespace) -> int:
    from engine.chunk import concat
    from engine.spiking import APPEND_DIMS, SpikingConfig, SpikingStream
    from engine.store import RunStore, read_record
    from engine.stream import RunStopped

    fields = {
        "model": args.model,
        "regime": args.regime,
        "scale": args.scale,
        "duration": args.duration,
        "dt": args.dt,
        "seed": args.seed,
    }
    if args.chunk is not None:
        fields["chunk"] = args.chunk
    cfg = SpikingConfig(**fields).with_settings(**_settings(args.set))
    store = RunStore(args.out, engine="spiking", append_dims=APPEND_DIMS)
    stream = SpikingStream(cfg)
    chunks = []
    bar = _progress(cfg.duration, quiet=args.quiet or args.json)
    stopped = None
    with store:
        try:
            for chunk in stream.chunks():
                store.append(chunk)
                chunks.append(chunk)
                bar.update(float(chunk["chunk_end"].values[-1]) / 1000 - bar.n)
        except RunStopped as err:
            stopped = err
            store.finish(err.status, str(err))
    bar.close()
    if not chunks:
        print(f"dynascope: run stopped before its first chunk: {stopped}", file=sys.stderr)
        return EXIT_STOPPED
    ds = concat(chunks, APPEND_DIMS)
    summary = _summarise(ds, read_record(store.path))
    summary["out"] = str(store.path)
    summary["wall_seconds"] = time.perf_counter() - _T0
    _print_summary(summary, args.json)
    if stopped is not None:
        print(f"dynascope: run stopped: {stopped}", file=sys.stderr)
        return EXIT_STOPPED
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    if args.engine == "emergence":
        from explorer import emergence_cli

        return emergence_cli.run(args, _T0)
    return {"spiking": _cmd_run_spiking, "attention": _cmd_run_attention}[args.engine](args)


def _cmd_run_attention(args: argparse.Namespace) -> int:
    from engine.transformer.training import AttentionConfig, AttentionStream, summary

    lr = args.lr if args.lr is not None else (3e-2 if args.optimizer == "sgd" else 3e-3)
    cfg = AttentionConfig(
        layers=args.layers,
        heads=args.heads,
        width=args.width,
        attention=args.attention,
        source=args.source,
        length=args.length,
        optimizer=args.optimizer,
        lr=lr,
        batch=args.batch,
        steps=args.steps,
        probe_every=args.probe_every,
        seed=args.seed,
    )
    from engine.store import open_run

    stream = AttentionStream(cfg)

    def report(store) -> None:
        result = summary(open_run(store.path))
        result["out"] = str(store.path)
        result["wall_seconds"] = time.perf_counter() - _T0
        _print_attention(result, args.json)

    return store_stream(stream, args.out, report)


def store_stream(stream, out: str, report) -> int:
    """Run a training stream into the store at ``out``, then ``report(store)``; the exit status.

    A run stopped by a numerical blow-up keeps its stored chunks, is marked with the stream's
    status, is still reported, and exits with status 1.
    """
    from engine.store import RunStore
    from engine.stream import RunStopped

    stopped = None
    with RunStore(out, engine=stream.engine, append_dims=stream.append_dims) as store:
        try:
            for chunk in stream.chunks():
                store.append(chunk)
        except RunStopped as err:
            stopped = err
            store.finish(err.status, str(err))
    if store.chunks == 0:
        print(f"dynascope: run stopped before its first chunk: {stopped}", file=sys.stderr)
        return EXIT_STOPPED
    report(store)
    if stopped is not None:
        print(f"dynascope: run stopped: {stopped}", file=sys.stderr)
        return EXIT_STOPPED
    return 0


def _print_attention(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_clean(summary), sort_keys=True))
        return
    print(f"run        {summary['attention']} attention, {summary['optimizer']}, {summary['steps']} steps")
    print(f"losses     in-context {summary['icl_loss']:.3f}, bigram {summary['bigram_loss']:.3f} nats")
    print(f"sink rate  {summary['sink_rate']:.2f} (alpha_0 > 0.3)")
    print(f"{'layer':>6} {'head':>5} {'sink (non-trigger)':>19} {'sink (trigger)':>15} {'value drain':>12}")
    for h in summary["heads"]:
        print(
            f"{h['layer']:>6} {h['head']:>5} {h['sink_nontrigger']:>19.3f} {h['sink_trigger']:>15.3f} "
            f"{h['value_drain']:>12.3f}"
        )
    print("resid peak " + ", ".join(f"layer {k}: {v:.1f}x" for k, v in enumerate(summary["resid_peak"])))


class _NoProgress:
    n = 0.0

    def update(self, step: float) -> None:
        self.n += step

    def close(self) -> None:
        pass


def _progress(total_seconds: float, *, quiet: bool):
    if quiet or not sys.stderr.isatty():
        return _NoProgress()
    from tqdm import tqdm

    return tqdm(
        total=total_seconds,
        unit="s",
        unit_scale=False,
        disable=True if quiet else None,
        desc="simulating",
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.2f}/{total:.2f} s [{elapsed}<{remaining}]",
        file=sys.stderr,
    )


def _cmd_info(args: argparse.Namespace) -> int:
    from engine.store import open_chunk, read_record

    if _is_sweep(args.path):
        from engine.rnn.sweep import sweep_summary

        summary = sweep_summary(args.path)
        summary["path"] = args.path
        _print_sweep(summary, args.json)
        return 0
    record = read_record(args.path)
    if record["engine"] == "attention-probe":
        from engine.store import open_run
        from engine.transformer.pretrained import summary as probe_summary

        result = probe_summary(open_run(args.path))
        result["path"] = args.path
        _print_probe(result, args.json)
        return 0
    if record["engine"] == "emergence":
        from engine.emergence.summary import summary as emergence_summary
        from engine.store import open_run
        from explorer.emergence_cli import print_summary

        result = emergence_summary(open_run(args.path))
        result["path"] = args.path
        print_summary(result, args.json)
        return 0
    if record["engine"] == "attention":
        from engine.store import open_run
        from engine.transformer.training import summary as attention_summary

        result = attention_summary(open_run(args.path))
        result["path"] = args.path
        _print_attention(result, args.json)
        return 0
    ds = open_chunk(args.path)
    summary = _summarise(ds, record)
    summary["path"] = args.path
    _print_summary(summary, args.json)
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    from engine.store import RunStore, check_out_path, open_run
    from engine.transformer import pretrained

    if not args.text.strip():
        raise UsageError(f"--text {args.text!r} is empty: give some text to analyse")
    check_out_path(args.out)  # before the slow load
    show = not args.json and sys.stderr.isatty()

    def progress(message: str, fraction: float) -> None:
        if show:
            print(f"\r\033[K[{100 * fraction:3.0f}%] {message}", end="", file=sys.stderr, flush=True)

    chunk = pretrained.probe_chunk(args.text, progress=progress)
    if show:
        print("\r\033[K", end="", file=sys.stderr, flush=True)  # the progress line goes
    with RunStore(args.out, engine=pretrained.ENGINE, append_dims=pretrained.APPEND_DIMS) as store:
        store.append(chunk)
    result = pretrained.summary(open_run(store.path))
    result["out"] = str(store.path)
    result["wall_seconds"] = time.perf_counter() - _T0
    _print_probe(result, args.json)
    return 0


def _print_probe(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_clean(summary), sort_keys=True))
        return
    text = summary["text"] if len(summary["text"]) <= 70 else summary["text"][:67] + "..."
    print(f"probe      {summary['model']}, {summary['tokens']} tokens (first: {summary['first_token']!r})")
    print(f"text       {text}")
    print(f"sink rate  {summary['sink_rate']:.2f} (alpha_0 > 0.3); text loss {summary['text_loss']:.2f} nats")
    print(f"{'layer':>6} {'first-token attn':>17} {'sink heads':>11} {'top/median':>11} {'top value':>10} "
          f"{'at token':>9} {'dim':>5} {'BOS resid':>10}")  # fmt: skip
    for row in summary["layers"]:
        print(
            f"{row['layer']:>6} {row['first_token_attention']:>17.3f} {row['sink_heads']:>11.2f} "
            f"{row['top_median']:>11.1f} {row['top_value']:>10.1f} {row['top_token']:>9} {row['top_dim']:>5} "
            f"{row['resid_peak']:>9.1f}x"
        )


def _is_sweep(path: str) -> bool:
    from explorer.paths import is_sweep_store

    return is_sweep_store(path)


def _cmd_serve(args: argparse.Namespace) -> int:
    from explorer.serving import serve

    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port} is out of range: allowed 1-65535")
    return serve(args.address, args.port, open_path=args.open_path, runs=args.runs, show=args.show)


def _cmd_export(args: argparse.Namespace) -> int:
    from engine.store import open_run
    from explorer.export import export_run

    ds = open_run(args.path)
    out = export_run(ds, args.figure, args.format, args.out)
    print(f"wrote {out} ({out.stat().st_size:,} bytes)")
    return 0


def _number(text: str, option: str = "--vary") -> int | float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{option} value {text!r} is not a number") from None
    return int(value) if value.is_integer() else value


def _task_options(items: list[str]) -> dict:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise UsageError(f"--set {item!r}: expected FIELD=VALUE")
        out[name.strip()] = _number(value, "--set")
    return out


def _cmd_sweep(args: argparse.Namespace) -> int:
    from engine.rnn.sweep import SweepSpec, run_sweep, sweep_summary

    knob, sep, values = args.vary.partition("=")
    if not sep or not knob or not values:
        raise UsageError(f"--vary {args.vary!r}: expected KNOB=V1,V2,...")
    if args.workers < 1:
        raise UsageError(f"--workers {args.workers} is out of range: at least 1")
    spec = SweepSpec(
        task=args.task,
        knob=knob.strip(),
        values=tuple(_number(v) for v in values.split(",")),
        task_options=_task_options(args.set),
        seeds=args.seeds,
        hidden=args.hidden,
        parameterisation=args.parameterisation,
        gamma=args.gamma,
        nuclear=args.nuclear,
        l1=args.l1,
        max_steps=args.max_steps,
        lr=args.lr,
    )
    quiet = args.json or not sys.stderr.isatty()

    def progress(row):
        if not quiet:
            print(
                f"condition {row['index']}: {row['n_converged']}/{spec.seeds} converged, trained in "
                f"{row['train_seconds']:.1f} s",
                file=sys.stderr,
            )

    try:
        run_sweep(spec, args.out, scheduler=args.scheduler, workers=args.workers, progress=progress)
    except (OSError, TimeoutError) as err:
        raise UsageError(f"cannot reach the Dask scheduler {args.scheduler}: {err}") from None
    summary = sweep_summary(args.out)
    summary["out"] = args.out
    summary["wall_seconds"] = time.perf_counter() - _T0
    _print_sweep(summary, args.json)
    return 0


def _print_sweep(summary: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_clean(summary), sort_keys=True))
        return
    knob = summary["knob"]
    print(
        f"sweep      {summary['task']}, {knob} varied, {summary['seeds']} networks per condition, "
        f"{'complete' if summary['complete'] else 'incomplete'}"
    )
    print(f"{knob:>10} {'converged':>10} {'dynamics (sd)':>20} {'weights (sd)':>22} {'sigma_OOD':>10}")

    def f(x, sd=None):
        text = "-" if x is None else f"{x:.4g}"
        return text if sd is None else f"{text} ({sd:.2g})"

    for row in summary["conditions"]:
        print(
            f"{row[knob]!s:>10} {row['n_converged']:>10} {f(row['dynamics_degeneracy'], row['dynamics_sd']):>20} "
            f"{f(row['weight_degeneracy'], row['weights_sd']):>22} {f(row['sigma_ood']):>10}"
        )


COMMANDS = {
    "run": _cmd_run,
    "info": _cmd_info,
    "serve": _cmd_serve,
    "export": _cmd_export,
    "sweep": _cmd_sweep,
    "probe": _cmd_probe,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except (UsageError, ValueError) as err:  # StoreError is a ValueError
        print(f"dynascope: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dynascope: interrupted", file=sys.stderr)
        return 130


def entry() -> None:
    """The console command: ``main()``, then a fast exit.

    Interpreter teardown (freeing the network, numba's and LLVM's state) took 0.1-0.2 s of a
    one-second run; every file is closed and both streams are flushed by then, so the process
    ends without it.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
