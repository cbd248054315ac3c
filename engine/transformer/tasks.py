"""Bigram-Backcopy: the synthetic task in which attention sinks and active-dormant heads appear.

A sequence (Guo et al. 2024, "Active-Dormant Attention Heads") is built over a vocabulary of
*ordinary* tokens ``0 .. ordinary-1`` followed by BOS (``ordinary``) and an unused delimiter
(``ordinary + 1``). The ``triggers`` most frequent ordinary tokens (by the unigram marginal) are
triggers. With ``x_0 .. x_{T-1}`` the tokens of one sequence of length ``T``:

- ``x_0`` is BOS;
- ``x_1`` is drawn from the marginal with the triggers removed (renormalised; never BOS or the
  delimiter, whose marginal is zero);
- for ``t = 1 .. T-2``: if ``x_t`` is a trigger, ``x_{t+1} = x_{t-1}`` (back-copy of the token just
  before the trigger, solvable only in context); otherwise ``x_{t+1} ~ cond[x_t]`` (bigram).

Consecutive triggers never occur, so a copy source is never a trigger and never BOS. By
induction: ``x_1`` is not a trigger; if ``x_t`` is a trigger its copy ``x_{t+1} = x_{t-1}`` is the
token before a trigger, which (by the induction hypothesis, or because ``x_0`` is BOS) is not a
trigger. So after every trigger comes an ordinary bigram step. (Were the rule ever applied to two
consecutive triggers, it would still copy ``x_{t-1}`` — the token just before the current trigger —
and the sequence would alternate between the two triggers; it cannot arise here.)

Two sources of tables:

- ``"shakespeare"``: the tiny-Shakespeare character tables of the paper (65 characters + BOS +
  delimiter = 67), shipped as package data ``data/bigram_backcopy_shakespeare.npz``. Their BOS and
  delimiter rows equal the marginal; the BOS and delimiter columns are zero.
- ``"zipf"``: a seeded synthetic table over ``zipf_vocab`` ordinary tokens. The marginal is Zipfian,
  ``p(i) ∝ (i + 1) ** -zipf_exponent`` (token id = frequency rank - 1, so the triggers are
  ``0 .. triggers-1``). Each ordinary token's bigram row is its own random permutation of the same
  Zipf weights, drawn with ``numpy.random.default_rng(table_seed)`` (``Generator.permuted`` over
  the rows of the tiled weights, axis 1): every row is as peaked as the marginal, but each token
  has different likely successors. As in the Shakespeare file, the BOS and delimiter rows equal the
  marginal and the BOS and delimiter columns are zero. The marginal is used for ``x_1`` and to rank
  the triggers; it is not the stationary distribution of the bigram chain.

Generation draws from an explicit ``numpy.random.Generator`` and is vectorised over sequences
(a loop over positions only): one uniform per drawn token, turned into a token by inverse-CDF
sampling on the cumulative table.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from engine.config import Config, bounded, check_value, choice, integer

__all__ = ["BigramBackcopy", "Sequences", "query_masks", "SHAKESPEARE_FILE", "ZIPF_VOCAB_MAX", "LENGTH_MAX"]

SHAKESPEARE_FILE = "data/bigram_backcopy_shakespeare.npz"  # inside the engine.transformer package
SHAKESPEARE_ORDINARY = 65  # tiny-Shakespeare characters; BOS = 65, delimiter = 66
ZIPF_VOCAB_MAX = 2048  # dense (vocab, vocab) float64 tables: ~34 MB for cond + ~34 MB for its CDF at the cap
LENGTH_MAX = 4096
_LENGTH_SPEC = {"kind": "int", "lo": 3, "hi": LENGTH_MAX, "lo_open": False, "hi_open": False}


@dataclass(frozen=True, eq=False)
class Sequences:
    """A batch of Bigram-Backcopy sequences and the type of each position."""

    tokens: np.ndarray  # (n, length) int64; column 0 is BOS
    # (n, length) bool; True at t >= 1 where tokens[:, t] is a trigger (so tokens[:, t+1] copies tokens[:, t-1])
    trigger: np.ndarray

    @property
    def bigram(self) -> np.ndarray:
        """``(n, length)`` bool: positions ``t >= 1`` whose token is not a trigger (the next token is a bigram draw)."""
        out = ~self.trigger
        out[:, 0] = False  # BOS is neither
        return out

    @property
    def n(self) -> int:
        return self.tokens.shape[0]

    @property
    def length(self) -> int:
        return self.tokens.shape[1]


def query_masks(seq: Sequences) -> tuple[np.ndarray, np.ndarray]:
    """Trigger and bigram query masks aligned with next-token targets ``tokens[:, 1:]``.

    Query ``t`` (``0 <= t < length - 1``) predicts ``tokens[:, t + 1]``. ``trigger_q[:, t]`` is True where
    ``tokens[:, t]`` is a trigger (the target is the back-copied ``tokens[:, t - 1]``); ``bigram_q[:, t]``
    where ``t >= 1`` and ``tokens[:, t]`` is not a trigger (the target is a draw from the bigram row).
    The BOS query (``t = 0``, whose target ``x_1`` comes from the trigger-free marginal) belongs to
    neither, so the two masks partition queries ``1 .. length - 2``.
    """
    trigger_q = seq.trigger[:, :-1].copy()  # (n, length - 1)
    bigram_q = seq.bigram[:, :-1]  # (n, length - 1)
    return trigger_q, bigram_q


@dataclass(frozen=True, eq=False)
class _Tables:
    marginal: np.ndarray  # (vocab,) unigram probabilities; zero at BOS and the delimiter
    cond: np.ndarray  # (vocab, vocab) bigram rows cond[prev, next], each summing to 1
    itos: tuple[str, ...]  # (vocab,) token names
    cdf: np.ndarray  # (vocab * vocab,) row r holds r + cumulative cond[r] (last entry exactly r + 1)


def _cumulative(p: np.ndarray) -> np.ndarray:
    """Cumulative distribution along the last axis, scaled so that each last entry is exactly 1."""
    c = np.cumsum(p, axis=-1)
    return c / c[..., -1:]  # entries after the last nonzero probability are exactly 1 too


def _sample(cdf: np.ndarray, rows: np.ndarray, u: np.ndarray, vocab: int) -> np.ndarray:
    """One token per entry of ``rows`` from table row ``rows[i]`` with uniform ``u[i]`` (inverse CDF).

    ``cdf`` is the flat offset table of :class:`_Tables`: the entries of row ``r`` lie in ``[r, r + 1]``,
    so a single ``searchsorted`` serves every row. A zero-probability token repeats its predecessor's
    entry and is never the first entry above the query, so it is never drawn.
    """
    base = rows.astype(np.float64)  # (n,)
    query = np.minimum(base + u, np.nextafter(base + 1.0, 0.0))  # (n,) in [r, r + 1): stays inside row r
    order = np.argsort(query)  # sorted keys let searchsorted narrow each search (2x faster on large tables)
    found = np.empty_like(rows)  # (n,)
    found[order] = np.searchsorted(cdf, query[order], side="right")
    return found - rows * vocab  # (n,) int64


def _readonly(*arrays: np.ndarray) -> None:
    for a in arrays:
        a.setflags(write=False)


def _finish(marginal: np.ndarray, cond: np.ndarray, itos: tuple[str, ...]) -> _Tables:
    vocab = marginal.shape[0]
    if cond.shape != (vocab, vocab) or len(itos) != vocab:
        raise ValueError(f"inconsistent tables: marginal {marginal.shape}, cond {cond.shape}, itos {len(itos)}")
    if not np.allclose(cond.sum(axis=1), 1.0) or not np.isclose(marginal.sum(), 1.0):
        raise ValueError("bigram rows and the marginal must each sum to 1")
    cdf = (_cumulative(cond) + np.arange(vocab, dtype=np.float64)[:, None]).ravel()  # (vocab * vocab,)
    _readonly(marginal, cond, cdf)
    return _Tables(marginal, cond, itos, cdf)


@functools.lru_cache(maxsize=1)
def _shakespeare_tables() -> _Tables:
    """The paper's tiny-Shakespeare tables, loaded once from package data."""
    with resources.files("engine.transformer").joinpath(SHAKESPEARE_FILE).open("rb") as fh:
        with np.load(fh, allow_pickle=False) as data:
            marginal = np.asarray(data["marginal"], dtype=np.float64)  # (67,)
            cond = np.asarray(data["cond"], dtype=np.float64)  # (67, 67)
            itos = tuple(str(s) for s in data["itos"])  # (67,)
    if marginal.shape != (SHAKESPEARE_ORDINARY + 2,):
        raise ValueError(f"{SHAKESPEARE_FILE}: expected {SHAKESPEARE_ORDINARY + 2} tokens, found {marginal.shape}")
    return _finish(marginal, cond, itos)


@functools.lru_cache(maxsize=8)
def _zipf_tables(ordinary: int, exponent: float, seed: int) -> _Tables:
    """A seeded synthetic Zipfian bigram table (see the module docstring)."""
    weights = np.arange(1, ordinary + 1, dtype=np.float64) ** -exponent  # (ordinary,) rank ** -exponent
    weights /= weights.sum()
    rng = np.random.default_rng(seed)
    rows = rng.permuted(np.tile(weights, (ordinary, 1)), axis=1)  # (ordinary, ordinary) each row its own permutation
    rows /= rows.sum(axis=1, keepdims=True)
    vocab = ordinary + 2
    marginal = np.zeros(vocab)  # (vocab,)
    marginal[:ordinary] = weights
    cond = np.zeros((vocab, vocab))  # (vocab, vocab); BOS and delimiter columns stay zero
    cond[:ordinary, :ordinary] = rows
    cond[ordinary:, :ordinary] = weights  # BOS and delimiter rows = the marginal, as in the Shakespeare file
    itos = tuple(f"t{i}" for i in range(ordinary)) + ("<bos>", "<delim>")
    return _finish(marginal, cond, itos)


@dataclass(frozen=True)
class BigramBackcopy(Config):
    """Bigram-Backcopy sequences: bigram draws, except that a trigger is followed by a back-copy."""

    source: str = choice("shakespeare", ("shakespeare", "zipf"), doc="bigram tables: the paper's or synthetic Zipf")
    length: int = integer(32, 3, LENGTH_MAX, units="tokens", doc="tokens per sequence, BOS included")
    triggers: int = integer(3, 1, ZIPF_VOCAB_MAX, doc="the k most frequent ordinary tokens act as triggers")
    zipf_vocab: int = integer(64, 4, ZIPF_VOCAB_MAX, doc="ordinary tokens of the zipf source (BOS, delimiter extra)")
    zipf_exponent: float = bounded(1.0, 0.0, 10.0, lo_open=True, doc="zipf source: p(rank) ∝ rank ** -exponent")
    table_seed: int = integer(0, 0, 2**32 - 1, doc="zipf source: seed of the bigram-row permutations")

    def check(self) -> None:
        hi = self.ordinary - 1  # at least one ordinary token must stay a non-trigger, to draw x_1 from
        if self.triggers > hi:
            raise ValueError(
                f"triggers={self.triggers} is out of range: allowed [1, {hi}] for source={self.source!r} "
                f"({self.ordinary} ordinary tokens, at least one of which must not be a trigger)"
            )

    # -- vocabulary ---------------------------------------------------------------------------

    @property
    def ordinary(self) -> int:
        """Number of ordinary tokens (all but BOS and the delimiter)."""
        return SHAKESPEARE_ORDINARY if self.source == "shakespeare" else self.zipf_vocab

    @property
    def vocab(self) -> int:
        """Total vocabulary size, BOS and delimiter included."""
        return self.ordinary + 2

    @property
    def bos(self) -> int:
        return self.ordinary

    @property
    def delimiter(self) -> int:
        """The delimiter token: part of the vocabulary, never generated."""
        return self.ordinary + 1

    def _tables(self) -> _Tables:
        if self.source == "shakespeare":
            return _shakespeare_tables()
        return _zipf_tables(self.zipf_vocab, self.zipf_exponent, self.table_seed)

    @property
    def marginal(self) -> np.ndarray:
        """``(vocab,)`` unigram marginal (read-only); zero at BOS and the delimiter."""
        return self._tables().marginal

    @property
    def cond(self) -> np.ndarray:
        """``(vocab, vocab)`` bigram table ``cond[prev, next]`` (read-only); every row sums to 1."""
        return self._tables().cond

    @property
    def itos(self) -> tuple[str, ...]:
        """``(vocab,)`` token names: characters for shakespeare, ``"t17"`` for zipf; ``"<bos>"``, ``"<delim>"``."""
        return self._tables().itos

    @property
    def trigger_ids(self) -> np.ndarray:
        """``(triggers,)`` int64: the most frequent ordinary tokens by the marginal, most frequent first."""
        order = np.argsort(-self.marginal[: self.ordinary], kind="stable")  # ties: lower id first
        return order[: self.triggers].astype(np.int64)

    @property
    def is_trigger(self) -> np.ndarray:
        """``(vocab,)`` bool lookup: True for trigger tokens."""
        out = np.zeros(self.vocab, dtype=bool)
        out[self.trigger_ids] = True
        return out

    # -- sequences ----------------------------------------------------------------------------

    def generate(self, n: int, rng: np.random.Generator, *, length: int | None = None) -> Sequences:
        """``n`` sequences of ``length`` tokens (default: the config's), drawn from ``rng``."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"n={n!r} is not allowed: must be an integer >= 0")
        t_len = self.length if length is None else check_value("length", length, _LENGTH_SPEC, "tokens")
        tab = self._tables()
        vocab = self.vocab
        is_trigger = self.is_trigger  # (vocab,)

        first = np.where(is_trigger, 0.0, tab.marginal)  # (vocab,) triggers removed; BOS, delimiter are 0
        first_cdf = _cumulative(first)  # (vocab,) a one-row offset table (row 0)

        u = rng.random((n, t_len - 1))  # (n, length - 1) column t - 1 draws token t
        tokens = np.empty((n, t_len), dtype=np.int64)  # (n, length)
        tokens[:, 0] = self.bos
        tokens[:, 1] = _sample(first_cdf, np.zeros(n, dtype=np.int64), u[:, 0], vocab)
        for t in range(1, t_len - 1):
            cur = tokens[:, t]  # (n,)
            drawn = _sample(tab.cdf, cur, u[:, t], vocab)  # (n,) bigram draw from cond[cur]
            tokens[:, t + 1] = np.where(is_trigger[cur], tokens[:, t - 1], drawn)  # back-copy after a trigger
        trigger = is_trigger[tokens]  # (n, length); BOS is never a trigger
        return Sequences(tokens=tokens, trigger=trigger)

    def decode(self, tokens: np.ndarray) -> str:
        """One sequence ``(length,)`` as text: characters joined (shakespeare) or names spaced (zipf)."""
        ids = np.asarray(tokens)
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"tokens with shape {ids.shape} and dtype {ids.dtype} are not allowed: one integer row")
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab):
            bad = ids[(ids < 0) | (ids >= self.vocab)][0]
            raise ValueError(f"token={int(bad)} is out of range: allowed [0, {self.vocab - 1}]")
        names = self.itos
        sep = "" if self.source == "shakespeare" else " "
        return sep.join(names[i] for i in ids.tolist())
