"""Data helpers of the emergence dashboard: curve rows from chunks, fitted curves and onsets, the fit
summary, grokking's spectrum and Fourier neurons, and feature-visualisation text (numpy only; no Panel,
no Bokeh).

A run on screen keeps everything it has received so far in a :class:`RunHistory` (one
:class:`~engine.chunk.Chunk`, concatenated along ``step`` and ``probe``). The curves stream only the
rows of each new chunk (:func:`layer_rows`, :func:`scalar_rows`, :func:`head_rows`,
:func:`loss_rows`); the fits (:func:`fit_run`: the emergence law of each layer, Gallego-Feliciano et
al. 2025, and the logistic onsets of the task's abrupt curves, :mod:`engine.emergence.summary`) are
recomputed on the whole history by a :class:`Refitter`, a background thread that refits at most
once per interval and never more than about half the time, so the display stays responsive.
"""

from __future__ import annotations

import html
import queue
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np

from engine.chunk import Chunk, concat
from engine.emergence.fits import LN9, LawFit, LogisticFit
from engine.emergence.summary import LAW_CURVES, ONSET_CURVES, curve, law_fits, onset_fits
from explorer.attention_data import MAX_SERIES, head_series, step_rows

__all__ = [
    "ABRUPT",
    "FIT_POINTS",
    "HEAD_SCORES",
    "LAW_CURVES",
    "ONSET_CURVES",
    "ONSET_MIN_R2",
    "Fits",
    "Refitter",
    "RunHistory",
    "abrupt_names",
    "example_html",
    "fit_run",
    "fit_summary",
    "fitted_rows",
    "frequency_counts",
    "head_rows",
    "layer_rows",
    "loss_rows",
    "onset_rows",
    "purest_neurons",
    "scalar_rows",
    "spectrum_map",
    "token_text",
]

FIT_POINTS = 160  # points of a drawn fitted curve
ONSET_MIN_R2 = 0.5  # a logistic fit explaining less of its curve marks no onset
APPEND_DIMS = ("step", "probe")
# The curves drawn with each task's abrupt ones: (name, label); those in ONSET_CURVES get a logistic fit.
ABRUPT: dict[str, tuple[tuple[str, str], ...]] = {
    "massive": (("icl_loss", "in-context loss"), ("bigram_loss", "bigram loss")),
    "sparsity": (("icl_loss", "in-context loss"), ("bigram_loss", "bigram loss")),
    "induction": (("icl_acc", "in-context accuracy"), ("induction_max", "induction score, best head")),
    "icl-bursty": (("icl_acc", "in-context accuracy"), ("iwl_acc", "in-weights accuracy")),
    "grokking": (("train_acc", "train accuracy"), ("test_acc", "test accuracy")),
}
# The per-head scores of each task: (variable, title).
HEAD_SCORES: dict[str, tuple[tuple[str, str], ...]] = {
    "massive": (("induction", "Induction score"), ("prev_token", "Previous-token score")),
    "sparsity": (("induction", "Induction score"), ("prev_token", "Previous-token score")),
    "induction": (("induction", "Induction score"), ("prev_token", "Previous-token score")),
    "icl-bursty": (("query_to_match", "Query → matching item"), ("label_to_item", "Label → its item")),
    "grokking": (),
}


def abrupt_names(task: str) -> tuple[str, ...]:
    """The task's abrupt curves that get a logistic fit (:data:`engine.emergence.summary.ONSET_CURVES`)."""
    return ONSET_CURVES.get(task, ())


# -- a run's history ---------------------------------------------------------------------------
@dataclass
class RunHistory:
    """Everything received of one run: one chunk concatenated along ``step`` and ``probe``."""

    data: Chunk | None = None
    version: int = 0  # bumped by every extension (the fits say which version they describe)

    def extend(self, chunk: Chunk) -> None:
        self.data = chunk if self.data is None else concat([self.data, chunk], APPEND_DIMS)
        self.version += 1

    @property
    def probes(self) -> int:
        return 0 if self.data is None or "probe" not in self.data else len(self.data["probe"].values)

    @property
    def last_step(self) -> int:
        if self.data is None or "probe" not in self.data or not self.probes:
            return 0
        return int(self.data["probe"].values[-1])

    def __len__(self) -> int:
        return self.probes


# -- curve rows ------------------------------------------------------------------------------
def _steps(data) -> np.ndarray:
    return np.asarray(data["probe"].values).astype(np.int64)


def layer_rows(data, name: str) -> dict[str, np.ndarray]:
    """``step`` and ``L{layer}`` (probe,) columns of a per-layer variable ``name`` (probe, layer)."""
    rows: dict[str, np.ndarray] = {"step": _steps(data)}
    if name not in data:
        return rows
    values = np.asarray(data[name].values, dtype=float)  # (probe, layer)
    for layer in range(values.shape[1]):
        rows[f"L{layer}"] = values[:, layer]
    return rows


def scalar_rows(data, names: list[str] | tuple[str, ...]) -> dict[str, np.ndarray]:
    """``step`` and one (probe,) column per scalar curve present (``induction_max``: the best head's score)."""
    rows: dict[str, np.ndarray] = {"step": _steps(data)}
    for name in names:
        if name in data or (name == "induction_max" and "induction" in data):
            rows[name] = curve(data, name)[1]
    return rows


def head_rows(data, name: str, cap: int = MAX_SERIES) -> dict[str, np.ndarray]:
    """``step`` and, per series key of :func:`~explorer.attention_data.head_series`, a (probe,) column of
    the per-head score ``name`` (probe, layer, head); beyond ``cap`` heads, each layer's largest."""
    rows: dict[str, np.ndarray] = {"step": _steps(data)}
    if name not in data:
        return rows
    values = np.asarray(data[name].values, dtype=float)  # (probe, layer, head)
    _, n_layers, n_heads = values.shape
    for key, _ in head_series(n_layers, n_heads, cap):
        layer, head = key.split("_")
        column = values[:, int(layer)]  # (probe, head)
        rows[key] = np.nanmax(column, axis=1) if head == "top" else column[:, int(head)]
    return rows


def loss_rows(data, stride: int = 1) -> dict[str, np.ndarray]:
    """Training-loss rows ``step``, ``loss`` (step,), every ``stride``-th step."""
    rows = step_rows(data)
    keep = rows["step"] % max(1, stride) == 0
    return {k: v[keep] for k, v in rows.items()}


# -- fits ------------------------------------------------------------------------------------
@dataclass
class Fits:
    """The fits of one run's history: the law of each layer per curve, the onsets, and when."""

    laws: dict[str, list[LawFit]] = field(default_factory=dict)  # "top_ratio" -> one per layer
    onsets: dict[str, LogisticFit] = field(default_factory=dict)  # "icl_acc" -> its logistic fit
    last_step: int = 0  # the last probe step fitted
    version: int = 0  # the history version fitted
    seconds: float = 0.0  # wall time of the fits


def fit_run(data, version: int = 0) -> Fits:
    """Fit a run's history (chunk or dataset): the emergence law per layer of each curve of
    :data:`LAW_CURVES` that has finite values, and the logistic onsets of the task's abrupt curves."""
    t0 = time.perf_counter()
    out = Fits(version=version)
    if data is None or "probe" not in data or not len(data["probe"].values):
        return out
    out.last_step = int(np.asarray(data["probe"].values)[-1])
    for name in LAW_CURVES:
        if name in data and np.isfinite(np.asarray(data[name].values, dtype=float)).any():
            out.laws[name] = law_fits(data, name)
    out.onsets = onset_fits(data)
    out.seconds = time.perf_counter() - t0
    return out


def _grid(last_step: int, points: int = FIT_POINTS) -> np.ndarray:
    return np.linspace(0.0, float(max(last_step, 1)), points)


def fitted_rows(fits: list[LawFit] | dict[str, LogisticFit], last_step: int) -> dict[str, np.ndarray]:
    """Dense fitted curves over the observed steps ``0 .. last_step``: ``step`` and one column per
    layer (``L{layer}``, from a list of law fits) or per curve name (from a dict of logistic fits);
    NaN where a fit has none."""
    t = _grid(last_step)
    rows: dict[str, np.ndarray] = {"step": t}
    items = fits.items() if isinstance(fits, dict) else ((f"L{i}", f) for i, f in enumerate(fits))
    for key, fit in items:
        rows[key] = np.asarray(fit.predict(t), dtype=float) if fit.ok else np.full(t.shape, np.nan)
    return rows


def onset_rows(fits: dict[str, LogisticFit], labels: dict[str, str], last_step: int) -> dict[str, list]:
    """Onset markers of the fitted abrupt curves: ``step`` (onset, 10 % of the way), ``end`` (90 %),
    ``name``, ``label``, ``abrupt``; only fits whose onset lies inside ``0 .. last_step`` and whose R²
    is at least :data:`ONSET_MIN_R2`."""
    rows: dict[str, list] = {"step": [], "end": [], "name": [], "label": [], "abrupt": []}
    for name, fit in fits.items():
        if not fit.ok or not np.isfinite(fit.onset) or not 0 <= fit.onset <= last_step or fit.r2 < ONSET_MIN_R2:
            continue
        rows["step"].append(float(fit.onset))
        rows["end"].append(float(min(fit.midpoint + fit.width * LN9, last_step)))
        rows["name"].append(name)
        rows["label"].append(labels.get(name, name))
        rows["abrupt"].append(bool(fit.abrupt))
    return rows


def fit_summary(label: str, fits: Fits, labels: dict[str, str] | None = None) -> list[dict]:
    """One row per fit for a table: ``run``, ``curve``, ``what`` (law kind or onset), ``r2``, ``at``
    (peak step of a law, onset step of a logistic fit), ``note``."""
    labels = labels or {}
    rows = []
    names = {"top_ratio": "top/median", "nonzero_share": "nonzero share"}
    for name, per_layer in fits.laws.items():
        for layer, fit in enumerate(per_layer):
            rows.append(
                {
                    "run": label,
                    "curve": f"{names.get(name, name)} L{layer}",
                    "what": fit.kind,
                    "r2": fit.r2,
                    "at": fit.peak_step,
                    "note": fit.message,
                }
            )
    for name, fit in fits.onsets.items():
        what = "insufficient data" if not fit.ok else ("abrupt onset" if fit.abrupt else "gradual / not yet")
        rows.append(
            {
                "run": label,
                "curve": labels.get(name, name),
                "what": what,
                "r2": fit.r2,
                "at": fit.onset if fit.ok else float("nan"),
                "note": fit.message,
            }
        )
    return rows


class Refitter:
    """Refits runs' histories in a background thread; the newest history of each run wins.

    :meth:`submit` hands over a history (its chunk is never modified afterwards: extensions build
    new chunks); :meth:`results` returns the fits finished since the last call. After a round of
    fits the thread waits ``max(every, pause * its duration)`` before the next, so fitting takes
    at most about ``1 / (1 + pause)`` of a core however slow the fits become.
    """

    def __init__(self, every: float = 1.0, pause: float = 1.0) -> None:
        self.every, self.pause = every, pause
        self._wanted: dict[Hashable, tuple[Chunk, int]] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._done: queue.Queue[tuple[Hashable, Fits]] = queue.Queue()
        self._busy = False
        self._thread: threading.Thread | None = None
        self.last_seconds = 0.0

    def submit(self, key: Hashable, data: Chunk, version: int) -> None:
        """Fit ``data`` (history ``version``) under ``key``, replacing what waits under the same key."""
        with self._lock:
            self._wanted[key] = (data, version)
        self._wake.set()
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="dynascope-fits", daemon=True)
            self._thread.start()

    def forget(self) -> None:
        """Drop what waits to be fitted and what was fitted (a new run is shown)."""
        with self._lock:
            self._wanted.clear()
        while True:
            try:
                self._done.get_nowait()
            except queue.Empty:
                break

    def results(self) -> list[tuple[Hashable, Fits]]:
        out = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                return out

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._busy or bool(self._wanted) or not self._done.empty()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def _work(self) -> None:
        while not self._stop.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stop.is_set():
                return
            with self._lock:
                wanted, self._wanted = self._wanted, {}
                self._busy = bool(wanted)
            t0 = time.perf_counter()
            for key, (data, version) in wanted.items():
                try:
                    fits = fit_run(data, version)
                except Exception:  # a fit that fails leaves the previous one drawn
                    fits = None
                if fits is not None:
                    self._done.put((key, fits))
            with self._lock:
                self._busy = False
            took = time.perf_counter() - t0
            self.last_seconds = took
            self._stop.wait(max(self.every, self.pause * took))


# -- grokking --------------------------------------------------------------------------------
def spectrum_map(data) -> np.ndarray:
    """(frequency, probe) Fourier power of the embeddings at every probe."""
    return np.asarray(data["spectrum"].values, dtype=float).T


def frequency_counts(freq: np.ndarray, purity: np.ndarray, n_freq: int) -> tuple[np.ndarray, np.ndarray]:
    """Neurons per dominant frequency (n_freq,) and their mean purity (NaN where none)."""
    freq = np.asarray(freq, dtype=np.int64)
    purity = np.asarray(purity, dtype=float)
    counts = np.bincount(freq, minlength=n_freq)[:n_freq].astype(float)
    sums = np.bincount(freq, weights=purity, minlength=n_freq)[:n_freq]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return counts, mean


def purest_neurons(freq: np.ndarray, purity: np.ndarray, k: int = 12) -> list[tuple[int, int, float]]:
    """The ``k`` neurons of highest purity: (neuron, dominant frequency, purity), purest first."""
    purity = np.asarray(purity, dtype=float)
    order = np.argsort(-np.where(np.isfinite(purity), purity, -np.inf), kind="stable")[:k]
    return [(int(n), int(freq[n]), float(purity[n])) for n in order]


# -- feature text ----------------------------------------------------------------------------
_VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥"}


def token_text(names, token: int) -> str:
    """A token's text with blanks made visible; ``-1`` (before the sequence start) is empty."""
    if token < 0:
        return ""
    name = str(names[token]) if names is not None and token < len(names) else str(token)
    return "".join(_VISIBLE.get(ch, ch) for ch in name) or "∅"


def example_html(window: np.ndarray, values: np.ndarray, names, high: float) -> str:
    """One example as HTML: each token shaded by the neuron's activation there (relative to
    ``high``), the example's own (last) token outlined; the activation value first."""
    parts = []
    for k, (token, value) in enumerate(zip(np.asarray(window), np.asarray(values, dtype=float), strict=True)):
        if token < 0:
            continue
        alpha = 0.0 if not np.isfinite(value) or high <= 0 else float(np.clip(value / high, 0.0, 1.0))
        last = k == len(window) - 1
        style = f"background: rgba(230, 85, 13, {alpha:.2f}); padding: 0 1px; font-family: monospace;"
        if last:
            style += " outline: 2px solid #7b2d26; font-weight: bold;"
        title = f"activation {value:.3f}" if np.isfinite(value) else ""
        cls = ' class="hit"' if last else ""
        parts.append(f'<span{cls} style="{style}" title="{title}">{html.escape(token_text(names, int(token)))}</span>')
    return "".join(parts)
