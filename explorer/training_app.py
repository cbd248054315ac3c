"""What the training dashboards share: one or two runs trained in a background thread, shown live or opened
from their stores.

:class:`TrainingApp` is a :class:`panel.viewable.Viewer` that trains its runs through
:class:`explorer.attention_run.TrainingRun` (the attention and emergence explorers). It holds the run
and the runs on screen (``shown``) and does what both do alike:

- the settings are checked as they change: the engine's message for a bad value stands beside the
  controls and nothing starts; a note names the changed settings that wait for the next run;
- learning rate and probe interval act on a running run at its next chunk;
- Start (or resume after Pause), Pause, and the end of the browser session;
- the periodic callback drains the run into the views, each drain sent as one message and timed
  (the status line shows the median time over the last 5 s with the training speed);
- the probe slider follows the newest probe unless the user moved it;
- a stored run is opened by path (inside the folders this server may read), alone or as run B.

Each run on screen is an object with ``label``, ``name``, ``config`` (with ``steps``), ``history``
(with ``extend``, ``last_step`` and a length: its probes), ``path`` and ``status``. A subclass sets
:attr:`TrainingApp.engine` and :attr:`TrainingApp.ending`, makes its own settings, views and
``probe_slider``, and supplies what is its own: the configs from its settings (``_build``), which
settings differ from the running run's (``_changed``), the training run (``_training_run``) and what
its store names call a config (``_variant``), the runs on screen for a new run or stored ones
(``_show_live``, ``_read_stored``, ``_show_stored``), the rows of new data for its curves
(``_push_rows``), the periodic update (``tick``) and, if it has one, a run's headline measure for the
status line (``_headline``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import panel as pn

from engine.store import StoreError, read_record
from explorer.attention_run import ENDED, RunEvent, TrainingRun
from explorer.paths import check_allowed, runs_dir
from explorer.session import held, locked

__all__ = ["TrainingApp", "LOSS_POINTS", "PUSH_WINDOW", "IDLE"]

LOSS_POINTS = 4000  # training-loss points drawn per run
PUSH_WINDOW = 5.0  # seconds of pushes whose median time the status line shows
IDLE = "idle · set up a run and press Start, or open a stored one"  # the status line with no run


class TrainingApp(pn.viewable.Viewer):
    """Run control, status and stored runs of a dashboard that trains one or two runs (one per browser session)."""

    engine: ClassVar[str] = ""  # the engine of its run stores; their names start with it
    ending: ClassVar[str] = ""  # the button that ends a run (its name, as the messages say it)

    def __init__(self, *, period_ms: int, **params):
        super().__init__(**params)
        self.period_ms = period_ms
        self.run: TrainingRun | None = None
        self.shown: list = []
        self.push_ms: list[float] = []
        self._pushes: list[tuple[float, float]] = []  # (wall time, push ms)
        self._callback = None
        self._syncing = False
        self._follow = True
        self._loss_stride = 1

    def _open_and_watch(self, open_path: str | None) -> None:
        """Open ``open_path`` if given; end the run when the browser session closes."""
        if open_path:
            self.path_input.value = str(open_path)
            self.open_stored()
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(lambda ctx: self.shutdown())

    # -- widgets ----------------------------------------------------------------------------------
    def _run_widgets(self) -> None:
        """Messages beside the controls, Start and Pause, the status line and the stored-run opener."""
        self.config_msg = pn.pane.Alert(
            "", alert_type="danger", visible=False, css_classes=["config-error"], margin=(0, 5)
        )
        self.live_msg = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["live-error"], margin=(0, 5))
        self.restart_note = pn.pane.Alert(
            "", alert_type="info", visible=False, css_classes=["restart-note"], margin=(0, 5)
        )
        self.start_btn = pn.widgets.Button(name="Start", button_type="success", width=80)
        self.pause_btn = pn.widgets.Button(name="Pause", button_type="warning", width=80)
        self.start_btn.on_click(lambda e: locked(self.start))
        self.pause_btn.on_click(lambda e: locked(self.pause))
        self.status = pn.pane.HTML(IDLE, css_classes=["status-line"], sizing_mode="stretch_width", min_height=24)
        self.path_input = pn.widgets.TextInput(
            name="open a stored run", placeholder=f"runs/{self.engine}-….zarr", css_classes=["open-path"], width=300
        )
        self.open_btn = pn.widgets.Button(name="Open", width=80)
        self.open_b_btn = pn.widgets.Button(name="Open as B", width=100)
        self.open_btn.on_click(lambda e: locked(self.open_stored))
        self.open_b_btn.on_click(lambda e: locked(lambda: self.open_stored(as_b=True)))
        self.open_msg = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["open-error"])

    def _run_controls(self, live: list, end_btn: pn.widgets.Button) -> list:
        """The controls below the settings: their messages, the ``live`` settings, the buttons, the opener."""
        return [
            self.config_msg,
            self.restart_note,
            "### While it trains",
            pn.Row(*live),
            self.live_msg,
            pn.Row(self.start_btn, self.pause_btn, end_btn),
            "### Stored run",
            self.path_input,
            pn.Row(self.open_btn, self.open_b_btn),
            self.open_msg,
        ]

    @staticmethod
    def _show(alert: pn.pane.Alert, message: str) -> None:
        alert.object = message
        alert.visible = bool(message)

    @contextmanager
    def _quietly(self) -> Iterator[None]:
        """Widgets set inside do not set off the app's own watchers."""
        syncing, self._syncing = self._syncing, True
        try:
            yield
        finally:
            self._syncing = syncing

    # -- config -----------------------------------------------------------------------------------
    def _build(self) -> list:
        """The configs of the run (and its comparison) from the settings; ``ValueError`` if bad."""
        raise NotImplementedError

    def _changed(self, configs: list) -> list[str]:
        """The settings of ``configs`` that differ from those of the runs on screen."""
        raise NotImplementedError

    def _check(self) -> list | None:
        """The typed configs, or None with the engine's message shown beside the controls."""
        if self._syncing:
            return None
        try:
            configs = self._build()
        except (ValueError, TypeError) as err:
            self._show(self.config_msg, str(err))
            return None
        self._show(self.config_msg, "")
        self._restart_note(configs)
        return configs

    def _restart_note(self, configs: list) -> None:
        """Say which changed settings wait for the next run."""
        message = ""
        if self.run is not None and self.run.state not in ENDED and self.shown:
            changed = self._changed(configs)
            if changed:
                message = f"{', '.join(changed)} changed: this applies to the next run ({self.ending}, then Start)"
        self._show(self.restart_note, message)

    def _on_live(self, name: str, value: Any) -> None:
        """Learning rate and probe interval: checked, then applied to a running run at its next chunk."""
        if self._syncing or self._check() is None:
            return
        if self.run is None or self.run.state in ENDED:
            return
        try:
            self.run.update(**{name: value})
        except ValueError as err:
            self._show(self.live_msg, str(err))
            return
        self._show(self.live_msg, "")

    # -- run control ------------------------------------------------------------------------------
    def _training_run(self, configs: list, paths: list[Path]) -> TrainingRun:
        """The (unstarted) run of ``configs``, stored at ``paths``."""
        raise NotImplementedError

    def _variant(self, config: Any) -> str:
        """What a run's store name and status line call its config (the end of ``runs/ENGINE-…-A-VARIANT.zarr``)."""
        raise NotImplementedError

    def _show_live(self, run: TrainingRun, configs: list, paths: list[Path]) -> None:
        """Put the runs of a new ``run`` on screen, their views empty."""
        raise NotImplementedError

    def start(self) -> None:
        """Start a run from the settings, or resume a paused one (nothing starts on bad input)."""
        if self.run is not None and self.run.state == "running":
            return
        if self.run is not None and self.run.state == "paused":
            self.run.start()
            self._ensure_callback()
            self._status()
            return
        configs = self._check()
        if configs is None:
            return
        folder = runs_dir()
        stem = f"{self.engine}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        paths = [
            folder / f"{stem}-{label}-{self._variant(cfg)}.zarr" for label, cfg in zip("AB", configs, strict=False)
        ]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            run = self._training_run(configs, paths)
        except (StoreError, ValueError, OSError) as err:
            self._show(self.config_msg, str(err))
            return
        self._stop_run()
        self.run = run
        self._show_live(run, configs, paths)
        run.start()
        self._ensure_callback()
        self._status()

    def pause(self) -> None:
        if self.run is not None:
            self.run.pause()
            self._status()

    def shutdown(self) -> None:
        """End this session's run (the browser tab closed)."""
        self._stop_callback()
        self._stop_run()

    def _stop_run(self) -> None:
        if self.run is not None:
            self.run.stop()
            self.run = None

    def _ensure_callback(self) -> None:
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(self.tick, period=self.period_ms)

    def _stop_callback(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    # -- the runs on screen -----------------------------------------------------------------------
    @property
    def _steps(self) -> int:
        """Training steps of the longest run on screen (100 with none): the span of the step axes."""
        return max((s.config.steps for s in self.shown), default=100)

    def _setup(self, shown: list) -> None:
        """These runs on screen, following their newest probe, with no push timed yet."""
        self.shown = shown
        self._follow = True
        self.push_ms.clear()
        self._pushes.clear()
        self._loss_stride = max(1, -(-self._steps // LOSS_POINTS))

    def _push_rows(self, index: int, data: Any, *, replace: bool = False) -> None:
        """The rows of ``data`` (a chunk, or a whole stored run with ``replace``) into run ``index``'s curves."""
        raise NotImplementedError

    def _add(self, index: int, data: Any, *, replace: bool = False) -> None:
        """New data of run ``index`` into its history and its curves."""
        self.shown[index].history.extend(data)
        self._push_rows(index, data, replace=replace)

    def _receive(self, events: list[RunEvent]) -> None:
        """The drained chunks of the runs on screen."""
        for event in events:
            if event.index < len(self.shown):
                self._add(event.index, event.chunk)

    def _follow_probes(self, n: int) -> None:
        """The probe slider covers ``n`` probes; it moves to the newest unless the user moved it."""
        with self._quietly():
            self.probe_slider.param.update(end=max(1, n - 1), disabled=n < 2)
            if self._follow:
                self.probe_slider.value = n - 1

    # -- the periodic update ----------------------------------------------------------------------
    def tick(self) -> None:
        """Drain the run into the views and refresh the status line (every ``period_ms`` while there is work)."""
        raise NotImplementedError

    @contextmanager
    def _pushing(self) -> Iterator[None]:
        """The changes made inside go to the browser as one message; its time counts in the status line."""
        t0 = time.perf_counter()
        with held(pn.state.curdoc):
            yield
        ms = (time.perf_counter() - t0) * 1000
        self.push_ms.append(ms)
        self._pushes.append((time.perf_counter(), ms))

    # -- status -----------------------------------------------------------------------------------
    def _headline(self, s: Any) -> str:
        """The headline measure of run ``s`` at its newest probe, as ``", name value"`` (``""`` when none)."""
        return ""

    def _timings(self) -> list[str]:
        """Timings the status line shows after the training speed and the push time."""
        return []

    def _status(self) -> None:
        run = self.run
        if run is None:
            return
        now = time.perf_counter()
        self._pushes = [(t, ms) for t, ms in self._pushes if now - t < PUSH_WINDOW]
        push = float(np.median([ms for _, ms in self._pushes])) if self._pushes else 0.0
        state = run.state
        if state in ENDED and run.pending:
            state = "finishing"  # the last probes are on their way to the views
        parts = [f"<b>{state}</b>"]
        for s, slot in zip(self.shown, run.slots, strict=False):
            extra = f" ({slot.state}{': ' + slot.error if slot.error else ''})" if slot.state in ENDED else ""
            step = f"step {slot.step}/{s.config.steps}{self._headline(s)}"
            parts.append(f"{s.name} {self._variant(s.config)}: {step}{extra}")
        parts.append(" · ".join([f"{run.steps_per_second():.0f} steps/s · update {push:.0f} ms", *self._timings()]))
        if run.error:
            parts.append(run.error)
        text = " · ".join(parts)
        if self.status.object != text:
            self.status.object = text

    # -- stored runs ------------------------------------------------------------------------------
    def _read_stored(self, paths: list[Path]) -> tuple[list, list]:
        """The stored runs at ``paths`` and their configs (``StoreError`` / ``ValueError`` when they do not fit)."""
        raise NotImplementedError

    def _show_stored(self, paths: list[Path], stored: list, configs: list) -> None:
        """Put the stored runs on screen with everything they hold; the settings show run A's."""
        raise NotImplementedError

    def _stored_line(self, s: Any) -> str:
        """Stored run ``s``'s part of the status line."""
        last, probes = s.history.last_step, len(s.history)
        return f"{s.name} {s.path.name}: {self._variant(s.config)}, {s.status}, {last} steps, {probes} probes"

    def open_stored(self, as_b: bool = False) -> None:
        """Show a stored run (inside the folders this server may read); ``as_b``: beside run A."""
        if self.run is not None and self.run.state in ("running", "paused"):
            self._show(self.open_msg, f"a run is in progress: {self.ending} it before opening a stored one")
            return
        try:
            path = check_allowed(self.path_input.value, "run store")
            record = read_record(path)
            if record["engine"] != self.engine:
                raise StoreError(f"{path.name} is a {record['engine']} run, not an {self.engine} run")
            paths = [path]
            if as_b:
                if not self.shown or self.shown[0].path is None:
                    raise StoreError("open a run A first")
                paths = [self.shown[0].path, path]
            stored, configs = self._read_stored(paths)
        except (StoreError, ValueError, OSError, KeyError) as err:
            self._show(self.open_msg, str(err))
            return
        self._show(self.open_msg, "")
        self._stop_run()
        self._show_stored(paths, stored, configs)
        self.status.object = "<b>stored run</b> · " + " · ".join(self._stored_line(s) for s in self.shown)
