"""Export of runs: figures (PNG, SVG, self-contained HTML) and data (NetCDF).

    dynascope export runs/b.zarr --figure raster --format png --out raster.png
    dynascope export runs/ind.zarr --figure summary --format svg --out induction.svg

Spiking runs: PNG and SVG are drawn with matplotlib, HTML with Bokeh (resources inlined, so the
file opens offline); every figure labels its axes with units and carries a caption with the
run's parameters and status. Emergence runs: the ``summary`` figure of
:func:`explorer.emergence_figures.run_figure` as PNG or SVG. Every run exports its data as NetCDF.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

__all__ = ["FIGURES", "FORMATS", "export_run", "export_bytes", "matplotlib_figure"]

FIGURES = ("raster", "rates", "summary")
FORMATS = ("png", "svg", "html", "nc")


def _caption(ds) -> str:
    status = ds.attrs.get("run_status", "complete")
    end = float(np.asarray(ds["chunk_end"].values).max())
    return f"{ds.attrs.get('title', '')}; {end / 1000:g} s simulated; run {status}"


def matplotlib_figure(ds, figure: str):
    """A matplotlib figure of a run: ``raster``, ``rates`` or ``summary``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from engine.spiking.analysis import summary
    from explorer.figures import COLORS, raster_and_rate

    if figure not in FIGURES:
        raise ValueError(f"figure={figure!r} is not allowed: choose one of {', '.join(FIGURES)}")
    end = float(np.asarray(ds["chunk_end"].values).max())
    start = max(0.0, end - 1000.0)
    if figure == "rates":
        fig, ax = plt.subplots(figsize=(9, 3.2))
        t = np.asarray(ds["time"].values)
        for k, pop in enumerate(np.asarray(ds["pop"].values).astype(str)):
            ax.plot(t, np.asarray(ds["rate"].values)[k], lw=0.7, color=COLORS[pop], label=pop)
        ax.set_xlabel("time (ms)")
        ax.set_ylabel("population rate (Hz)")
        ax.legend(loc="upper right")
        ax.set_xlim(0, end)
    elif figure == "raster":
        fig, axes = plt.subplots(2, 1, figsize=(9, 4.6), sharex=True, gridspec_kw={"height_ratios": [2.3, 1]})
        raster_and_rate(ds, axes, n_show=min(200, ds.sizes["neuron"]), t_start=start, t_stop=end)
        axes[0].legend(loc="upper right", markerscale=3, fontsize=8)
    else:
        fig = plt.figure(figsize=(10, 7))
        grid = fig.add_gridspec(3, 2, height_ratios=[2.2, 1, 1.3], hspace=0.45, wspace=0.25)
        ax_r, ax_p = fig.add_subplot(grid[0, :]), fig.add_subplot(grid[1, :])
        raster_and_rate(ds, (ax_r, ax_p), n_show=min(200, ds.sizes["neuron"]), t_start=start, t_stop=end)
        ax_r.legend(loc="upper right", markerscale=3, fontsize=8)
        s = summary(ds)
        from engine.spiking.analysis import neuron_rates

        rates = neuron_rates(ds)
        labels = np.asarray(ds["population"].values).astype(str)
        ax_h = fig.add_subplot(grid[2, 0])
        edges = np.linspace(0, max(1.0, np.percentile(rates, 99.5)), 30)
        for pop, color in COLORS.items():
            ax_h.hist(rates[labels == pop], bins=edges, color=color, alpha=0.5, label=pop)
        ax_h.set_xlabel("single-neuron rate (Hz)")
        ax_h.set_ylabel("neurons")
        ax_h.legend(fontsize=8)
        ax_t = fig.add_subplot(grid[2, 1])
        ax_t.axis("off")
        rate_text = ", ".join(f"{k} {v:.2f} Hz" for k, v in s["rate_hz"].items())
        cv = s["cv_isi"]
        ax_t.text(
            0,
            1,
            "\n".join(
                [
                    f"rates: {rate_text}",
                    f"spikes: {s['spikes']}",
                    f"ISI CV: {cv['all']:.3f}",
                    f"synchrony chi (1 ms): {s['synchrony']:.3f}",
                    f"population Fano factor: {s['fano']:.2f}",
                    f"simulation loop: {s['sim_seconds']:.3f} s",
                ]
            ),
            va="top",
            family="monospace",
            fontsize=9,
        )
    fig.text(0.01, 0.005, _caption(ds), fontsize=7.5, color="#444444", va="bottom")
    fig.subplots_adjust(bottom=0.16 if figure != "summary" else 0.08)
    return fig


def _html(ds, figure: str) -> str:
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models import Div
    from bokeh.resources import INLINE

    from explorer.spiking_views import RasterView, RateView, VoltageView

    end = float(np.asarray(ds["chunk_end"].values).max())
    views = []
    if figure in ("raster", "summary"):
        raster = RasterView(window_ms=min(end, 1000.0), neuron_range=(0, min(1000, ds.sizes["neuron"])))
        raster.load(ds)
        views.append(raster.fig)
    if figure in ("rates", "raster", "summary"):
        rates = RateView(window_ms=end if figure == "rates" else min(end, 1000.0), smooth_ms=0.0)
        rates.load(ds)
        views.append(rates.fig)
    if figure == "summary" and ds.sizes.get("recorded", 0):
        volt = VoltageView(window_ms=min(end, 1000.0))
        volt.load(ds)
        views.append(volt.fig)
    views.append(Div(text=f"<p style='font-size:9pt;color:#444'>{_caption(ds)}</p>"))
    for v in views:
        v.sizing_mode = "stretch_width"
    return file_html(column(*views, sizing_mode="stretch_width"), INLINE, title=f"Dynascope: {figure}")


def export_bytes(ds, figure: str, fmt: str) -> bytes:
    """The exported file's content."""
    if fmt not in FORMATS:
        raise ValueError(f"format={fmt!r} is not allowed: choose one of {', '.join(FORMATS)}")
    if fmt == "nc":
        return _netcdf(ds)
    engine = ds.attrs.get("engine", "spiking")
    if engine == "emergence" and fmt in ("png", "svg") and figure == "summary":
        import matplotlib

        matplotlib.use("Agg")
        from explorer.emergence_figures import run_figure

        return _save(run_figure(ds), fmt)
    if engine != "spiking":
        also = ", or --figure summary as png or svg" if engine == "emergence" else ""
        raise ValueError(f"{engine} runs export --format nc{also}")
    if figure not in FIGURES:
        raise ValueError(f"figure={figure!r} is not allowed: choose one of {', '.join(FIGURES)}")
    if fmt == "html":
        return _html(ds, figure).encode()
    return _save(matplotlib_figure(ds, figure), fmt)


def _save(fig, fmt: str) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _netcdf(ds) -> bytes:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "run.nc"
        ds.to_netcdf(path, engine="scipy")
        return path.read_bytes()


def export_run(ds, figure: str, fmt: str, out: str | Path) -> Path:
    """Write ``figure`` of ``ds`` in ``fmt`` to ``out`` (its folder must exist)."""
    out = Path(out).expanduser()
    if not out.absolute().parent.is_dir():
        raise ValueError(f"cannot write {out}: directory {out.absolute().parent} does not exist")
    if out.is_dir():
        raise ValueError(f"cannot write {out}: it is a directory")
    data = export_bytes(ds, figure, fmt)
    out.write_bytes(data)
    return out
