"""The solution-degeneracy explorer: run a sweep of task-trained RNN ensembles, watch it, inspect it.

Compose it in a ``panel serve`` app (``panels/degeneracy.py``) or a notebook::

    DegeneracyExplorer(values="1,2", seeds=4).servable()

A sweep varies one knob (a task field, the width ``hidden``, or a training knob) over a few
values; each condition trains ``seeds`` networks as one batched ensemble in a background thread
(:mod:`explorer.sweep_run`) and is written into a sweep store under the runs folder as soon as
it finishes, so the page shows, live, the loss of every network of the condition being trained
and, per finished condition, the DSA and PIF matrices, their MDS embeddings, the three
degeneracy levels against the knob, and a chosen network's hidden trajectories with its fixed
points. A stored sweep opens to the same views. Bad values are reported beside the controls and
start nothing.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import panel as pn
import param

from engine.rnn.fixed_points import project_pca
from engine.rnn.sweep import SweepSpec
from engine.rnn.tasks import TASKS
from engine.store import StoreError
from explorer.degeneracy_data import (
    FIXED_POINT_TASKS,
    build_spec,
    condition_label,
    done_conditions,
    fixed_points,
    knobs_for,
    levels,
    mds_points,
    network_states,
    open_sweep,
    sweep_spec,
)
from explorer.degeneracy_views import LevelsView, LossView, MatrixView, MDSView, TrajectoryView, axis_label
from explorer.paths import check_allowed, is_sweep_store, runs_dir
from explorer.session import held, locked
from explorer.sweep_run import SweepRun

__all__ = ["DegeneracyExplorer"]

SUGGESTED_VALUES = {  # what the values box shows when a knob is chosen
    "channels": "1,2",
    "hidden": "16,32",
    "gamma": "0.5,2",
    "nuclear": "0,0.001",
    "l1": "0,0.0001",
    "frequencies": "2,4",
    "dims": "2,3",
    "delay_min": "5,10",
    "delay_max": "20,40",
    "steps": "30,60",
    "threshold": "0.01,0.001",
}
METRICS = ("dsa", "pif")


class DegeneracyExplorer(pn.viewable.Viewer):
    """Solution-degeneracy sweeps, live and stored (one per browser session)."""

    task = param.Selector(default="flipflop", objects=list(TASKS), doc="task the networks learn")
    knob = param.Selector(
        default="channels", objects=knobs_for("flipflop"), check_on_set=False, doc="the varied knob (one of the task's)"
    )

    def __init__(
        self,
        *,
        values: str = "1,2",
        seeds: int = 4,
        hidden: int = 32,
        max_steps: int = 6000,
        lr: float = 1e-2,
        open_path: str | None = None,
        period_ms: int = 250,
        **params,
    ):
        super().__init__(**params)
        self.param.knob.objects = knobs_for(self.task)
        if self.knob not in self.param.knob.objects:
            self.knob = self.param.knob.objects[0]
        self.period_ms = period_ms
        self.loss = LossView()
        self.mds = {var: MDSView(var) for var in METRICS}
        self.matrices = {var: MatrixView(var) for var in METRICS}
        self.levels = LevelsView()
        self.trajectories = TrajectoryView()
        self.run: SweepRun | None = None
        self.spec: SweepSpec | None = None  # the sweep shown (live or stored)
        self.path: Path | None = None
        self.ds = None  # its store, opened lazily (None until a condition is stored)
        self._callback = None
        self._syncing = False
        self._live = {"index": -1, "n_converged": 0, "n_diverged": 0, "step": -1, "measuring": False}
        self._fp_results: queue.Queue = queue.Queue()
        self._fp_searches = 0  # searches running
        self._stored = (0, "")  # (finished conditions, their converged counts), read on each stored condition
        self._stored_set: set[int] = set()
        self._fp_cache: dict[tuple, object] = {}
        self._fp_wanted: tuple | None = None
        self._widgets(values, seeds, hidden, max_steps, lr)
        self._check()
        if open_path:
            self.path_input.value = str(open_path)
            self.open_stored()
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(lambda ctx: self.shutdown())

    # -- widgets --------------------------------------------------------------------------
    def _widgets(self, values: str, seeds: int, hidden: int, max_steps: int, lr: float) -> None:
        self.values_input = pn.widgets.TextInput(
            name="values (comma separated)", value=values, css_classes=["values-input"], width=300
        )
        self.seeds_input = pn.widgets.IntInput(
            name="networks per value", value=seeds, start=1, css_classes=["seeds-input"], width=145
        )
        self.hidden_input = pn.widgets.IntInput(
            name="units per network", value=hidden, start=1, css_classes=["hidden-input"], width=145
        )
        self.steps_input = pn.widgets.IntInput(
            name="max training steps", value=max_steps, start=1, step=100, css_classes=["steps-input"], width=145
        )
        self.lr_input = pn.widgets.FloatInput(
            name="learning rate", value=lr, step=0.001, format="0.0000", css_classes=["lr-input"], width=145
        )
        self.config_msg = pn.pane.Alert(
            "", alert_type="danger", visible=False, css_classes=["config-error"], margin=(0, 5)
        )
        self.start_btn = pn.widgets.Button(name="Start", button_type="success", width=80)
        self.stop_btn = pn.widgets.Button(name="Stop", button_type="warning", width=80, disabled=True)
        self.start_btn.on_click(lambda e: locked(self.start))
        self.stop_btn.on_click(lambda e: locked(self.stop))
        self.status = pn.pane.HTML(
            "idle · set up a sweep and press Start, or open a stored one",
            css_classes=["status-line"],
            sizing_mode="stretch_width",
            min_height=24,
        )
        self.condition_select = pn.widgets.Select(
            name="condition", options={}, css_classes=["condition-select"], width=300
        )
        self.network_select = pn.widgets.Select(name="network", options={}, css_classes=["network-select"], width=300)
        self.fp_btn = pn.widgets.Button(
            name="Find fixed points", width=150, disabled=True, css_classes=["fixed-points"]
        )
        self.fp_btn.on_click(lambda e: locked(self.find_fixed_points))
        self.fp_status = pn.pane.HTML("", css_classes=["fp-status"], width=300, min_height=20)
        self.path_input = pn.widgets.TextInput(
            name="open a stored sweep", placeholder="runs/sweep-….zarr", css_classes=["open-path"], width=300
        )
        self.open_btn = pn.widgets.Button(name="Open", width=80)
        self.open_btn.on_click(lambda e: locked(self.open_stored))
        self.open_msg = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["open-error"])
        for w in (self.values_input, self.seeds_input, self.hidden_input, self.steps_input, self.lr_input):
            w.param.watch(lambda e: self._check(), "value")
        self.param.watch(self._on_task, "task")
        self.param.watch(self._on_knob, "knob")
        self.condition_select.param.watch(self._on_condition_pick, "value")
        self.network_select.param.watch(self._on_network_pick, "value")

    @staticmethod
    def _show(alert: pn.pane.Alert, message: str) -> None:
        alert.object = message
        alert.visible = bool(message)

    # -- config ---------------------------------------------------------------------------
    def _build(self) -> SweepSpec:
        return build_spec(
            task=self.task,
            knob=self.knob,
            values=self.values_input.value,
            seeds=self.seeds_input.value,
            hidden=self.hidden_input.value,
            max_steps=self.steps_input.value,
            lr=self.lr_input.value,
        )

    def _check(self) -> SweepSpec | None:
        """The typed sweep, or None with the engine's message shown beside the controls."""
        if self._syncing:
            return None
        try:
            spec = self._build()
        except (ValueError, TypeError) as err:
            self._show(self.config_msg, str(err))
            return None
        self._show(self.config_msg, "")
        return spec

    def _on_task(self, event) -> None:
        if self._syncing:
            return
        knobs = knobs_for(self.task)
        self.param.knob.objects = knobs
        self.knob = knobs[0]  # the task's first field; _on_knob suggests values and checks
        self._check()

    def _on_knob(self, event) -> None:
        if self._syncing:
            return
        if self.knob in SUGGESTED_VALUES:
            self.values_input.value = SUGGESTED_VALUES[self.knob]
        self._check()

    # -- run control ----------------------------------------------------------------------
    def start(self) -> None:
        """Start the typed sweep in a new store (nothing starts if the input is bad).

        With an unfinished stored sweep shown and its settings unchanged, Start resumes it in
        its own store.
        """
        if self.run is not None and self.run.state == "running":
            return
        spec = self._check()
        if spec is None:
            return
        resume = self.run is None and self.ds is not None and spec == self.spec and self._stored[0] < len(spec.values)
        folder = runs_dir()
        name = f"sweep-{spec.task}-{spec.knob}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.zarr"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            run = SweepRun(spec, self.path if resume else folder / name)
        except (StoreError, ValueError, OSError) as err:
            self._show(self.config_msg, str(err))
            return
        self._show(self.open_msg, "")
        self.run, self.spec, self.path = run, spec, run.path
        self._live = {"index": -1, "n_converged": 0, "n_diverged": 0, "step": -1, "measuring": False}
        if not resume:
            self.ds = None
            self._stored, self._stored_set = (0, ""), set()
            self._clear_views()
        run.start()
        self._ensure_callback()
        self._buttons()
        self._status()

    def stop(self) -> None:
        if self.run is not None:
            self.run.stop()
            self._status()

    def shutdown(self) -> None:
        """End this session's sweep (the browser tab closed); finished conditions stay stored."""
        if self._callback is not None:
            self._callback.stop()
            self._callback = None
        if self.run is not None:
            self.run.stop()

    def _ensure_callback(self) -> None:
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(self.tick, period=self.period_ms)

    @property
    def busy(self) -> bool:
        """A sweep or a fixed-point search is running, or their results wait to be drawn."""
        running = self.run is not None and (self.run.state == "running" or self.run.pending)
        return running or self._fp_searches > 0 or not self._fp_results.empty()

    def _buttons(self) -> None:
        running = self.run is not None and self.run.state == "running"
        self.start_btn.disabled = running
        self.stop_btn.disabled = not running or self.run.stopping

    # -- the periodic update ----------------------------------------------------------------
    def tick(self) -> None:
        """Drain the sweep's events and finished fixed-point searches into the views."""
        events = self.run.drain() if self.run is not None else []
        found = []
        while True:
            try:
                found.append(self._fp_results.get_nowait())
            except queue.Empty:
                break
        with held(pn.state.curdoc):
            for event in events:
                if event.kind == "chunk":
                    self._on_chunk(event.index, event.chunk)
                else:
                    self._on_condition(event.index)
            for item in found:
                self._fp_searches -= 1
                self._on_fixed_points(*item)
            self._status()
            self._buttons()
        if not self.busy and self._callback is not None:  # idle sessions do not poll
            self._callback.stop()
            self._callback = None

    def _on_chunk(self, index: int, chunk) -> None:
        spec = self.spec
        if index != self._live["index"]:
            threshold = float(chunk.attrs["threshold"])
            title = (
                f"Training loss · condition {index + 1}/{len(spec.values)} ({spec.knob}={spec.values[index]}) · "
                f"dashed: threshold {threshold:g}"
            )
            labels = (axis_label(chunk["step"].attrs), axis_label(chunk["loss"].attrs))
            self.loss.reset(spec.seeds, threshold, spec.max_steps, title, labels)
            self._live["index"] = index
        self.loss.push(chunk)
        self._live.update(
            n_converged=int(chunk["n_converged"].values[-1]),
            n_diverged=int(chunk["n_diverged"].values[-1]),
            step=self.loss.last_step,
            measuring=chunk.sizes.get("snapshot", 0) > 0,  # the trained networks: DSA and PIF next
        )

    def _on_condition(self, index: int) -> None:
        self.ds = open_sweep(self.path)
        self._read_stored()
        self._refresh(select=index)

    # -- drawing a sweep ----------------------------------------------------------------------
    def _clear_views(self) -> None:
        spec = self.spec
        for view in (*self.mds.values(), self.levels, self.trajectories):
            view.clear()
        for var, view in self.matrices.items():
            view.clear(var.upper())
        labels = [f"{v}" for v in spec.values]
        attrs = {}
        if self.ds is not None:
            attrs = {name: dict(self.ds[name].attrs) for name in ("dsa", "pif", "ood_mse")}
        self.levels.set_axis(labels, spec.knob, attrs)
        self._syncing = True
        try:
            self.condition_select.options = {}
            self.network_select.options = {}
        finally:
            self._syncing = False
        self.fp_btn.disabled = True
        self.fp_status.object = ""

    def _refresh(self, select: int | None = None) -> None:
        """Redraw every per-condition view from the store; show condition ``select``."""
        ds = self.ds
        done = done_conditions(ds)
        for var, view in self.mds.items():
            view.show(mds_points(ds, var), ds[var].attrs.get("long_name", var))
        per_condition, per_network = levels(ds)
        attrs = {name: dict(ds[name].attrs) for name in ("dsa", "pif", "ood_mse")}
        self.levels.set_axis([f"{v.item()}" for v in ds[ds.attrs["knob"]].values], ds.attrs["knob"], attrs)
        self.levels.show(per_condition, per_network, ds.sizes["net"])
        if not done.size:
            return
        pick = select if select is not None and select in done else int(done[-1])
        self._syncing = True
        try:
            self.condition_select.options = {condition_label(ds, int(i)): int(i) for i in done}
            self.condition_select.value = pick
        finally:
            self._syncing = False
        self._show_condition(pick)

    def _on_condition_pick(self, event) -> None:
        if not self._syncing and event.new is not None and self.ds is not None:
            self._show_condition(int(event.new))

    def _on_network_pick(self, event) -> None:
        if not self._syncing and event.new is not None and self.ds is not None:
            self._show_network()

    def _show_condition(self, index: int) -> None:
        ds = self.ds
        conv = np.asarray(ds["converged"].values[index], bool)  # (net,)
        k, n = conv.size, int(conv.sum())
        label = condition_label(ds, index)
        for var, view in self.matrices.items():
            name = ds[var].attrs.get("long_name", var)
            view.show(ds[var].values[index], f"{var.upper()} · {label} · {n}/{k} converged", name)
        if self.run is None:  # a stored sweep: its epoch-mean loss curves
            spec = self.spec
            threshold = float(spec.condition(spec.values[index])[0].threshold)
            loss = np.asarray(ds["epoch_loss"].values[index], float)  # (epoch, net)
            rows = np.isfinite(loss).any(1)
            steps = (np.arange(loss.shape[0]) + 1) * spec.epoch_steps
            self.loss.reset(
                k,
                threshold,
                int(steps[rows][-1]) if rows.any() else 1,
                f"Epoch-mean training loss · {label} · dashed: threshold {threshold:g}",
                ("training step", axis_label(ds["epoch_loss"].attrs)),
            )
            self.loss.push({"step": _Values(steps[rows]), "loss": _Values(loss[rows])})
        options = {f"network {j} ({'converged' if conv[j] else 'not converged'})": j for j in range(k)}
        first = int(np.flatnonzero(conv)[0]) if n else 0
        self._syncing = True
        try:
            self.network_select.options = options
            self.network_select.value = first
        finally:
            self._syncing = False
        self._show_network()

    def _selection(self) -> tuple[int, int] | None:
        i, j = self.condition_select.value, self.network_select.value
        return None if i is None or j is None else (int(i), int(j))

    def _show_network(self) -> None:
        picked = self._selection()
        if picked is None:
            return
        i, j = picked
        hidden = network_states(self.ds, i, j)  # (trial, time, unit)
        proj = project_pca(hidden, k=2)
        converged = bool(self.ds["converged"].values[i, j])
        self.trajectories.show(
            proj.trajectories,
            proj.explained,
            f"Hidden trajectories · network {j} of {condition_label(self.ds, i)}"
            f"{'' if converged else ' (not converged)'} · {hidden.shape[0]} test trials",
        )
        supported = self.spec.task in FIXED_POINT_TASKS
        self.fp_btn.disabled = not supported
        self.fp_status.object = "" if supported else "fixed points are drawn for the flip-flop task"
        cached = self._fp_cache.get(self._fp_key(i, j))
        if cached is not None:
            self._draw_fixed_points(cached, hidden)

    # -- fixed points ------------------------------------------------------------------------
    def _fp_key(self, i: int, j: int) -> tuple:
        return (str(self.path), i, j)

    def find_fixed_points(self) -> None:
        """Search the selected network's fixed points in a thread (seconds); drawn when found."""
        picked = self._selection()
        if picked is None or self.path is None or self.spec.task not in FIXED_POINT_TASKS:
            return
        key = self._fp_key(*picked)
        self._fp_wanted = key
        if key in self._fp_cache:
            self._on_fixed_points(key, self._fp_cache[key], "", 0.0)
            return
        self.fp_status.object = f"finding the fixed points of network {picked[1]} …"
        path, (i, j) = self.path, picked

        def search() -> None:
            t0 = time.perf_counter()
            try:
                found = fixed_points(path, i, j)
                self._fp_results.put((key, found, "", time.perf_counter() - t0))
            except Exception as err:  # reported beside the button
                self._fp_results.put((key, None, f"{type(err).__name__}: {err}", 0.0))

        self._fp_searches += 1
        threading.Thread(target=search, name="dynascope-fixed-points", daemon=True).start()
        self._ensure_callback()

    def _on_fixed_points(self, key: tuple, found, error: str, seconds: float) -> None:
        if found is not None:
            self._fp_cache[key] = found
        if key != self._fp_wanted or self._selection() is None or key != self._fp_key(*self._selection()):
            return  # the selection moved on meanwhile
        if error:
            self.fp_status.object = f"fixed points failed: {error}"
            return
        hidden = network_states(self.ds, key[1], key[2])
        self._draw_fixed_points(found, hidden, seconds)

    def _draw_fixed_points(self, found, hidden: np.ndarray, seconds: float | None = None) -> None:
        proj = project_pca(hidden, found.points, k=2)  # the same axes as the trajectories
        self.trajectories.show_points(proj.points, found.stable, found.n_unstable, found.speed)
        stable = int(found.stable.sum())
        took = f" · {seconds:.1f} s" if seconds else ""
        self.fp_status.object = (
            f"{len(found)} fixed points under zero input: {stable} stable, {len(found) - stable} unstable{took}"
        )

    # -- stored sweeps --------------------------------------------------------------------
    def open_stored(self) -> None:
        """Show a stored sweep (it must lie inside the folders this server may read)."""
        if self.run is not None and self.run.state == "running":
            self._show(self.open_msg, "a sweep is running: stop it before opening another")
            return
        try:
            path = check_allowed(self.path_input.value, "sweep store")
            if not is_sweep_store(path):
                raise StoreError(f"{path} is not a sweep store")
            ds = open_sweep(path)
            spec = sweep_spec(ds)
        except (StoreError, ValueError, OSError, KeyError) as err:
            self._show(self.open_msg, str(err))
            return
        self._show(self.open_msg, "")
        self.run, self.spec, self.path, self.ds = None, spec, path, ds
        self._read_stored()
        self._sync_controls(spec)
        self._clear_views()
        self.loss.reset(0, float(spec.condition(spec.values[0])[0].threshold), 1, "Final training loss")
        self._refresh()
        self._status()
        self._buttons()

    def _sync_controls(self, spec: SweepSpec) -> None:
        """The controls show the opened sweep, ready to run again."""
        self._syncing = True
        try:
            self.param.knob.objects = knobs_for(spec.task)
            self.param.update(task=spec.task, knob=spec.knob)
            self.values_input.value = ",".join(str(v) for v in spec.values)
            self.seeds_input.value = spec.seeds
            self.hidden_input.value = spec.hidden
            self.steps_input.value = spec.max_steps
            self.lr_input.value = spec.lr
        finally:
            self._syncing = False
        self._check()

    # -- status ---------------------------------------------------------------------------
    def _read_stored(self) -> None:
        """Finished conditions and their converged counts, for the status line."""
        done = done_conditions(self.ds)
        n = np.asarray(self.ds["n_converged"].values)
        k = self.ds.sizes["net"]
        counts = ", ".join(f"{condition_label(self.ds, int(i))} {int(n[i])}/{k}" for i in done)
        self._stored = (len(done), counts)
        self._stored_set = {int(i) for i in done}

    def _status(self) -> None:
        spec, run = self.spec, self.run
        if spec is None:
            return
        name = self.path.name if self.path is not None else ""
        total = len(spec.values)
        n_done, counts = self._stored
        done_text = f" · converged: {counts}" if counts else ""
        if run is None:
            text = (
                f"<b>stored sweep</b> · {name} · {spec.task}, {spec.knob} = "
                f"{', '.join(str(v) for v in spec.values)}, {spec.seeds} networks each · "
                f"{n_done}/{total} conditions finished{done_text}"
            )
        elif run.state == "running":
            live = self._live
            i = max(run.current, live["index"], 0)
            if i in self._stored_set and i + 1 < total:  # stored; the next one is about to start
                i += 1
            head = "stopping" if run.stopping else "running"
            text = f"<b>{head}</b> · condition {i + 1}/{total} ({spec.knob}={spec.values[i]})"
            if live["index"] == i and live["step"] >= 0:
                text += f": {live['n_converged']}/{spec.seeds} converged, step {live['step']}"
                if live["n_diverged"]:
                    text += f", {live['n_diverged']} diverged"
                if live["measuring"]:
                    text += " · measuring DSA and PIF"
            else:
                text += ": starting"
            text += f" · {run.seconds:.0f} s{done_text}"
        elif run.state == "failed":
            text = f"<b>failed</b> · {run.error}{done_text}"
        else:
            text = f"<b>{run.state}</b> · {n_done}/{total} conditions stored in {run.seconds:.0f} s · {name}{done_text}"
        if self.status.object != text:
            self.status.object = text

    # -- layout -------------------------------------------------------------------------------
    def __panel__(self):
        controls = pn.Column(
            "### Sweep",
            pn.widgets.Select.from_param(self.param.task, width=300, css_classes=["task-select"]),
            pn.widgets.Select.from_param(self.param.knob, width=300, css_classes=["knob-select"]),
            self.values_input,
            pn.Row(self.seeds_input, self.hidden_input),
            pn.Row(self.steps_input, self.lr_input),
            self.config_msg,
            pn.Row(self.start_btn, self.stop_btn),
            pn.pane.Markdown(
                "Each value trains its networks as one ensemble until every network reaches the task's "
                "loss threshold or the step cap; only converged networks are compared.",
                styles={"font-size": "0.85em", "color": "#555"},
                width=300,
            ),
            "### Inspect",
            self.condition_select,
            self.network_select,
            self.fp_btn,
            self.fp_status,
            "### Stored sweep",
            self.path_input,
            self.open_btn,
            self.open_msg,
            width=330,
        )
        views = pn.Column(
            self.status,
            self.loss,
            pn.Row(*self.mds.values(), sizing_mode="stretch_width"),
            self.levels,
            pn.Row(*self.matrices.values()),
            self.trajectories,
            sizing_mode="stretch_width",
        )
        return pn.Row(controls, views, sizing_mode="stretch_width")


class _Values:
    """The ``.values`` surface of a chunk column, for arrays read from a sweep store."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values
