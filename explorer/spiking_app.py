"""The spiking explorer: a live network with sliders, its views, export, and stored runs.

Compose it in a ``panel serve`` app (``panels/spiking.py``) or a notebook::

    SpikingExplorer(model="brunel", regime="C").servable()

Sliders for g, eta, drive and the external input rate act on the running network at its next
chunk; model, regime, scale, dt and seed restart the run. Bad values are reported beside the
control and change nothing.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import numpy as np
import panel as pn
import param

from engine.chunk import Chunk
from engine.spiking import MODELS, REGIMES, SpikingConfig, SpikingStream
from engine.store import StoreError, open_run, read_record
from explorer.export import FIGURES, FORMATS, export_bytes
from explorer.live import LiveRun
from explorer.paths import check_allowed, runs_dir
from explorer.session import held, locked
from explorer.spiking_views import HistogramView, PhaseDiagram, RasterView, RateView, VoltageView

__all__ = ["SpikingExplorer", "runs_dir"]

SPEEDS = {"0.1x": 0.1, "0.25x": 0.25, "0.5x": 0.5, "1x": 1.0, "2x": 2.0, "5x": 5.0, "max": None}
HIST_WINDOW_MS = 2000.0


def check_open_path(text: str) -> Path:
    """A store path typed by a user: it must be a run store inside an allowed folder."""
    resolved = check_allowed(text)
    read_record(resolved)  # raises StoreError for anything that is not a store
    return resolved


class SpikingExplorer(pn.viewable.Viewer):
    """Live spiking network explorer (one per browser session)."""

    # restart the run
    model = param.Selector(default="brunel", objects=list(MODELS))
    regime = param.Selector(default="C", objects=list(REGIMES))
    # act on the running network
    g = param.Number(default=5.0, bounds=(0.0, 12.0), step=0.1, doc="relative inhibition |wi| / we")
    eta = param.Number(default=2.0, bounds=(0.0, 6.0), step=0.05, doc="external rate / threshold rate")
    drive = param.Number(default=0.0, bounds=(-20.0, 40.0), step=0.5, doc="constant drive (mV)")
    ext_rate = param.Number(default=20.0, bounds=(0.0, 100.0), step=0.5, doc="rate per external input (Hz)")
    speed = param.Selector(default="1x", objects=list(SPEEDS))

    def __init__(
        self,
        *,
        scale: float = 0.2,
        dt: float = 0.1,
        seed: int = 1,
        duration: float = 3600.0,
        chunk_ms: float = 50.0,
        open_path: str | None = None,
        period_ms: int = 80,
        **params,
    ):
        super().__init__(**params)
        self.chunk_ms = chunk_ms
        self.period_ms = period_ms
        self.duration = duration
        self.raster = RasterView()
        self.rates = RateView()
        self.voltage = VoltageView()
        self.hists = HistogramView()
        self.phase = PhaseDiagram()
        self.live: LiveRun | None = None
        self._callback = None
        self._labels = np.array([], dtype=str)
        self._recent = (np.zeros(0), np.zeros(0, np.int32))
        self._pushes: list[tuple[float, float]] = []  # (wall time, push ms)
        self._last_hist = 0.0
        self.push_ms: list[float] = []
        self.loaded = None
        self._widgets(scale, dt, seed)
        self._syncing = False
        self._config = self._build_config()
        self._sync_sliders()
        if open_path:
            self.path_input.value = str(open_path)
            self._open_stored()
        if pn.state.curdoc is not None and pn.state.curdoc.session_context is not None:
            pn.state.on_session_destroyed(lambda ctx: self.shutdown())

    # -- widgets --------------------------------------------------------------------------
    def _widgets(self, scale: float, dt: float, seed: int) -> None:
        self.scale_input = pn.widgets.FloatInput(
            name="scale (N relative to the preset)", value=scale, step=0.05, css_classes=["scale-input"], width=170
        )
        self.dt_input = pn.widgets.FloatInput(name="dt (ms)", value=dt, step=0.05, width=90, css_classes=["dt-input"])
        self.seed_input = pn.widgets.IntInput(name="seed", value=seed, width=90, css_classes=["seed-input"])
        self.config_msg = pn.pane.Alert(
            "", alert_type="danger", visible=False, css_classes=["config-error"], margin=(0, 5)
        )
        self.slider_msg = pn.pane.Alert(
            "", alert_type="danger", visible=False, css_classes=["slider-error"], margin=(0, 5)
        )
        self.start_btn = pn.widgets.Button(name="Start", button_type="success", width=80)
        self.pause_btn = pn.widgets.Button(name="Pause", button_type="warning", width=80)
        self.reset_btn = pn.widgets.Button(name="Reset", button_type="default", width=80)
        self.start_btn.on_click(lambda e: locked(self.start))
        self.pause_btn.on_click(lambda e: locked(self.pause))
        self.reset_btn.on_click(lambda e: locked(self.reset))
        self.status = pn.pane.HTML("idle", css_classes=["status-line"], sizing_mode="stretch_width", height=24)
        self.neuron_range = pn.widgets.IntRangeSlider(
            name="raster neurons", start=0, end=2500, value=(0, 2500), step=10, css_classes=["neuron-range"]
        )
        self.neuron_range.param.watch(self._on_range, "value")
        self.window_input = pn.widgets.FloatSlider(
            name="time window (ms)", start=100, end=5000, value=1000, step=100, css_classes=["window-slider"]
        )
        self.window_input.param.watch(self._on_window, "value")
        self.rows_input = pn.widgets.IntInput(
            name="raster rows (most neurons drawn)",
            value=self.raster.max_rows,
            start=10,
            end=100_000,
            css_classes=["rows-input"],
            width=200,
        )
        self.rows_input.param.watch(self._on_rows, "value")
        self.webgl_box = pn.widgets.Checkbox(name="WebGL raster (with a GPU)", value=False, css_classes=["webgl"])
        self.webgl_box.param.watch(self._on_webgl, "value")
        self.figure_select = pn.widgets.Select(name="figure", options=list(FIGURES), value="raster", width=110)
        self.format_select = pn.widgets.Select(name="format", options=list(FORMATS), value="png", width=80)
        self.download = pn.widgets.FileDownload(
            callback=self._export,
            filename="dynascope-raster.png",
            label="Export",
            button_type="primary",
            css_classes=["export"],
            width=130,
        )
        self.figure_select.param.watch(self._on_export_choice, "value")
        self.format_select.param.watch(self._on_export_choice, "value")
        self.export_msg = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["export-error"])
        self.path_input = pn.widgets.TextInput(
            name="open a stored run", placeholder="runs/….zarr", css_classes=["open-path"]
        )
        self.open_btn = pn.widgets.Button(name="Open", width=80)
        self.open_btn.on_click(lambda e: locked(self._open_stored))
        self.open_msg = pn.pane.Alert("", alert_type="danger", visible=False, css_classes=["open-error"])
        for w in (self.scale_input, self.dt_input, self.seed_input):
            w.param.watch(self._on_restart_param, "value")
        self.param.watch(self._on_restart_param, ["model", "regime"])
        self.param.watch(self._on_live_param, ["g", "eta", "drive", "ext_rate"])
        self.param.watch(self._on_speed, ["speed"])

    # -- config ---------------------------------------------------------------------------
    def _build_config(self) -> SpikingConfig:
        regime = self.regime if self.model == "brunel" else ""
        return SpikingConfig(
            model=self.model,
            regime=regime,
            scale=self.scale_input.value,
            dt=self.dt_input.value,
            seed=self.seed_input.value,
            duration=self.duration,
            chunk=self.chunk_ms,
            sample_interval=_sample_interval(self.dt_input.value),
        )

    def _sync_sliders(self) -> None:
        """Slider values from the config's parameters (after a restart)."""
        p = self._config.params
        self._syncing = True
        try:
            self.param.ext_rate.bounds = (0.0, max(100.0, round(4 * p.ext_rate)))
            self.param.g.bounds = (0.0, max(12.0, round(2 * p.g)))
            self.param.update(g=p.g, eta=min(p.eta, 6.0), drive=p.drive, ext_rate=p.ext_rate)
        finally:
            self._syncing = False
        self.phase.param.update(g=p.g, eta=p.eta)
        self._set_range(p.n)

    def _set_range(self, n: int) -> None:
        self.neuron_range.end = n
        self.neuron_range.value = (0, n)
        self.raster.neuron_range = (0, n)

    def _on_restart_param(self, event) -> None:
        try:
            cfg = self._build_config()
        except (ValueError, TypeError) as err:
            self._show(self.config_msg, str(err))
            return
        self._show(self.config_msg, "")
        running = self.live is not None and self.live.state == "running"
        self.reset()
        self._config = cfg
        self._sync_sliders()
        if running:
            self.start()

    def _on_live_param(self, event) -> None:
        if self._syncing:
            return
        change = {event.name: event.new}
        try:
            if self.live is not None and self.live.state in ("running", "paused", "idle"):
                self.live.update(**change)
            self._config = self._config.replace(params=self._config.params.with_changes(**change))
        except ValueError as err:
            self._show(self.slider_msg, str(err))
            return
        self._show(self.slider_msg, "")
        p = self._config.params
        self.phase.param.update(g=p.g, eta=p.eta)

    def _on_speed(self, event) -> None:
        if self.live is not None:
            self.live.speed = SPEEDS[self.speed]

    def _on_range(self, event) -> None:
        self.raster.neuron_range = tuple(self.neuron_range.value)
        self.raster.reset()
        if self.loaded is not None:
            self.raster.load(self.loaded)

    def _on_rows(self, event) -> None:
        self.raster.max_rows = int(event.new)
        self._on_range(None)

    def _on_webgl(self, event) -> None:
        self.raster.fig.output_backend = "webgl" if event.new else "canvas"

    def _on_window(self, event) -> None:
        for view in (self.raster, self.rates, self.voltage):
            view.window_ms = event.new

    @staticmethod
    def _show(alert: pn.pane.Alert, message: str) -> None:
        alert.object = message
        alert.visible = bool(message)

    # -- run control ----------------------------------------------------------------------
    def start(self) -> None:
        if self.live is None or self.live.state in ("finished", "diverged", "failed", "stopped"):
            self._new_run()
        self.live.start()
        if self._callback is None:
            self._callback = pn.state.add_periodic_callback(self.tick, period=self.period_ms)

    def pause(self) -> None:
        if self.live is not None:
            self.live.pause()
            self.tick()

    def reset(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
        for view in (self.raster, self.rates, self.voltage):
            view.reset()
        self._recent = (np.zeros(0), np.zeros(0, np.int32))
        self._pushes.clear()
        self.push_ms.clear()
        self.status.object = "idle"

    def shutdown(self) -> None:
        """End this session's run (the browser tab closed)."""
        if self._callback is not None:
            self._callback.stop()
            self._callback = None
        if self.live is not None:
            self.live.stop()

    def _new_run(self) -> None:
        folder = runs_dir()
        folder.mkdir(parents=True, exist_ok=True)
        cfg = self._config
        name = f"live-{cfg.model}{cfg.regime}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}.zarr"
        stream = SpikingStream(cfg)
        self.live = LiveRun(stream, store_path=folder / name, speed=SPEEDS[self.speed])
        self._labels = stream.population_labels
        self.loaded = None
        for view in (self.raster, self.rates, self.voltage):
            view.reset()

    # -- the periodic update ----------------------------------------------------------------
    def tick(self) -> None:
        """Drain the queue into the views (one push per tick) and refresh the status line."""
        live = self.live
        if live is None:
            return
        chunk = live.drain()
        if chunk is not None:
            t0 = time.perf_counter()
            t_end = float(chunk["chunk_end"].values[-1])
            with held(pn.state.curdoc):
                self.raster.push(chunk, self._labels, t_end)
                self.rates.push(chunk, t_end)
                self.voltage.push(chunk, t_end)
                self._keep_recent(chunk, t_end)
                if time.perf_counter() - self._last_hist > 1.0:
                    self._update_hists(t_end)
            ms = (time.perf_counter() - t0) * 1000
            self.push_ms.append(ms)
            self._pushes.append((time.perf_counter(), ms))
        self._status()

    def _keep_recent(self, chunk: Chunk, t_end: float) -> None:
        t = np.concatenate([self._recent[0], chunk["spike_time"].values])
        i = np.concatenate([self._recent[1], chunk["spike_neuron"].values])
        keep = t > t_end - HIST_WINDOW_MS
        self._recent = (t[keep], i[keep])

    def _update_hists(self, t_end: float) -> None:
        self._last_hist = time.perf_counter()
        recent = Chunk()
        recent.add("spike_time", "spike", self._recent[0], "spike time", "ms")
        recent.add("spike_neuron", "spike", self._recent[1], "spiking neuron", "")
        recent.add("population", "neuron", self._labels, "population", "")
        recent.add("chunk_end", "chunk", np.array([t_end]), "end of chunk", "ms")
        self.hists.update(recent, max(0.0, t_end - HIST_WINDOW_MS), t_end)

    def _status(self) -> None:
        live = self.live
        now = time.perf_counter()
        recent = [(t, ms) for t, ms in self._pushes if now - t < 5.0]
        self._pushes = recent
        span = now - recent[0][0] if len(recent) > 1 else 0.0
        rate = (len(recent) - 1) / span if span > 0 else 0.0
        push = float(np.median([ms for _, ms in recent])) if recent else 0.0
        spikes_per_s = live.spikes / (live.sim_ms / 1000) if live.sim_ms else 0.0
        text = (
            f"<b>{live.state}</b> · t = {live.sim_ms / 1000:.2f} s · {live.spikes:,} spikes · "
            f"real-time factor {live.rtf:.2f} · {spikes_per_s:,.0f} spikes/s · push {push:.1f} ms · "
            f"{rate:.1f} updates/s · {self.raster.points:,} points"
        )
        if live.error:
            text += f" · {live.error}"
        self.status.object = text

    # -- stored runs and export -------------------------------------------------------------
    def _open_stored(self) -> None:
        try:
            path = check_open_path(self.path_input.value)
            ds = open_run(path)
        except (StoreError, ValueError, OSError) as err:
            self._show(self.open_msg, str(err))
            return
        self._show(self.open_msg, "")
        self.reset()
        self.loaded = ds
        self._labels = np.asarray(ds["population"].values).astype(str)
        self._set_range(ds.sizes["neuron"])
        end = float(np.asarray(ds["chunk_end"].values).max())
        for view in (self.raster, self.rates, self.voltage):
            view.window_ms = min(max(end, 100.0), 1e7)
            view.load(ds)
        self.hists.update(ds, 0.0, end)
        self.phase.param.update(g=float(ds["g"].values[-1]), eta=float(ds["eta"].values[-1]))
        self.status.object = (
            f"<b>stored run</b> · {path.name} · {ds.attrs.get('run_status')} · "
            f"t = {end / 1000:g} s · {ds.sizes['spike']:,} spikes · {self.raster.points:,} points"
        )

    def _on_export_choice(self, event) -> None:
        ext = self.format_select.value
        self.download.filename = f"dynascope-{self.figure_select.value if ext != 'nc' else 'run'}.{ext}"

    def _export(self):
        import io

        try:
            if self.loaded is not None:
                ds = self.loaded
            elif self.live is not None and self.live.store is not None and self.live.store.chunks:
                ds = open_run(self.live.store.path)
            else:
                raise ValueError("nothing to export yet: start a run or open a stored one")
            data = export_bytes(ds, self.figure_select.value, self.format_select.value)
        except (ValueError, OSError) as err:
            self._show(self.export_msg, str(err))
            return io.BytesIO(b"")
        self._show(self.export_msg, "")
        return io.BytesIO(data)

    # -- layout -------------------------------------------------------------------------------
    def __panel__(self):
        run_box = pn.Column(
            "### Network",
            pn.widgets.Select.from_param(self.param.model, width=170),
            pn.widgets.Select.from_param(self.param.regime, width=170),
            self.scale_input,
            pn.Row(self.dt_input, self.seed_input),
            self.config_msg,
            "### Live parameters",
            pn.widgets.FloatSlider.from_param(self.param.g, css_classes=["g-slider"]),
            pn.widgets.FloatSlider.from_param(self.param.eta, css_classes=["eta-slider"]),
            pn.widgets.FloatSlider.from_param(self.param.drive, name="drive (mV)", css_classes=["drive-slider"]),
            pn.widgets.FloatSlider.from_param(self.param.ext_rate, name="input rate (Hz)", css_classes=["rate-slider"]),
            self.slider_msg,
            pn.widgets.RadioButtonGroup.from_param(self.param.speed, button_type="light"),
            pn.Row(self.start_btn, self.pause_btn, self.reset_btn),
            "### View",
            self.neuron_range,
            self.rows_input,
            self.window_input,
            self.webgl_box,
            "### Export",
            pn.Row(self.figure_select, self.format_select),
            self.download,
            self.export_msg,
            "### Stored run",
            self.path_input,
            self.open_btn,
            self.open_msg,
            width=330,
        )
        views = pn.Column(
            self.status, self.raster, self.rates, self.voltage, self.hists, self.phase, sizing_mode="stretch_width"
        )
        return pn.Row(run_box, views, sizing_mode="stretch_width")


def _sample_interval(dt: float) -> float:
    """1 ms bins when dt divides 1 ms, else one step."""
    steps = 1.0 / dt if dt > 0 else 0
    return 1.0 if dt > 0 and abs(steps - round(steps)) < 1e-9 else dt
