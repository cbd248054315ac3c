"""Bigram-Backcopy sequences and tables against the task's definition."""

import time
from importlib import resources

import numpy as np
import pytest
from scipy import stats

from engine.transformer.tasks import SHAKESPEARE_FILE, BigramBackcopy, Sequences, query_masks

SOURCES = [
    BigramBackcopy(length=64),
    BigramBackcopy(source="zipf", length=64, zipf_vocab=40, triggers=4, zipf_exponent=1.2, table_seed=3),
]


@pytest.fixture(scope="module", params=SOURCES, ids=["shakespeare", "zipf"])
def batch(request) -> tuple[BigramBackcopy, Sequences]:
    task = request.param
    return task, task.generate(400, np.random.default_rng(11))


# -- tables ------------------------------------------------------------------------------------


def test_shakespeare_vocabulary_and_triggers():
    task = BigramBackcopy()
    assert (task.vocab, task.bos, task.delimiter, task.ordinary) == (67, 65, 66, 65)
    assert [task.itos[i] for i in task.trigger_ids] == [" ", "e", "t"]
    assert task.itos[task.bos] == "<bos>" and task.itos[task.delimiter] == "<delim>"
    assert task.marginal.shape == (67,) and task.cond.shape == (67, 67)
    np.testing.assert_allclose(task.cond.sum(axis=1), 1.0)
    assert task.marginal.sum() == pytest.approx(1.0)
    assert task.marginal[[65, 66]].sum() == 0 and task.cond[:, [65, 66]].sum() == 0
    assert [task.itos[i] for i in BigramBackcopy(triggers=5).trigger_ids] == [" ", "e", "t", "o", "a"]


def test_shakespeare_tables_are_package_data():
    data = resources.files("engine.transformer").joinpath(SHAKESPEARE_FILE)
    assert data.is_file()
    with data.open("rb") as fh, np.load(fh) as shipped:
        task = BigramBackcopy()
        np.testing.assert_array_equal(task.cond, shipped["cond"])
        np.testing.assert_array_equal(task.marginal, shipped["marginal"])
        assert task.itos == tuple(str(s) for s in shipped["itos"])


def test_tables_are_read_only():
    task = BigramBackcopy()
    with pytest.raises(ValueError):
        task.cond[0, 0] = 1.0


def test_zipf_marginal_follows_the_power_law():
    task = BigramBackcopy(source="zipf", zipf_vocab=100, zipf_exponent=1.5, triggers=3)
    assert (task.vocab, task.bos, task.delimiter) == (102, 100, 101)
    p = task.marginal[:100]
    rank = np.arange(1, 101)
    np.testing.assert_allclose(p / p[0], rank**-1.5)
    slope = np.polyfit(np.log(rank), np.log(p), 1)[0]
    assert slope == pytest.approx(-1.5)
    assert task.marginal[100:].sum() == 0 and task.marginal.sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(task.trigger_ids, [0, 1, 2])
    assert task.itos[17] == "t17" and task.itos[100] == "<bos>" and task.itos[101] == "<delim>"


def test_zipf_rows_are_permutations_of_the_zipf_weights():
    task = BigramBackcopy(source="zipf", zipf_vocab=50, table_seed=7)
    w = task.marginal[:50]
    rows = task.cond[:50, :50]
    np.testing.assert_allclose(np.sort(rows, axis=1), np.broadcast_to(np.sort(w), (50, 50)))
    np.testing.assert_allclose(task.cond.sum(axis=1), 1.0)
    assert task.cond[:, 50:].sum() == 0
    np.testing.assert_allclose(task.cond[50:, :50], np.broadcast_to(w, (2, 50)))  # BOS, delimiter rows
    assert len({tuple(np.argsort(r)) for r in rows}) > 45  # each row has its own permutation


def test_zipf_tables_depend_on_table_seed_only():
    a = BigramBackcopy(source="zipf", zipf_vocab=30, table_seed=1)
    again = BigramBackcopy(source="zipf", zipf_vocab=30, table_seed=1, length=99, triggers=5)
    other = BigramBackcopy(source="zipf", zipf_vocab=30, table_seed=2)
    np.testing.assert_array_equal(a.cond, again.cond)
    assert not np.array_equal(a.cond, other.cond)
    np.testing.assert_array_equal(a.marginal, other.marginal)


# -- sequences ---------------------------------------------------------------------------------


def test_sequences_follow_the_rule(batch):
    task, seq = batch
    tokens, trigger = seq.tokens, seq.trigger
    n, length = tokens.shape
    assert (n, length) == (400, task.length) and tokens.dtype == np.int64 and trigger.dtype == bool
    assert (tokens[:, 0] == task.bos).all()
    assert ((tokens[:, 1:] >= 0) & (tokens[:, 1:] < task.ordinary)).all()  # no BOS or delimiter later
    is_trig = np.isin(tokens, task.trigger_ids)
    is_trig[:, 0] = False
    np.testing.assert_array_equal(trigger, is_trig)
    assert not trigger[:, 1].any()  # x1 is never a trigger
    assert not (trigger[:, 1:] & trigger[:, :-1]).any()  # so triggers never follow each other
    # wherever x_t is a trigger (1 <= t <= length - 2), x_{t+1} == x_{t-1}
    q = trigger[:, 1:-1]
    np.testing.assert_array_equal(tokens[:, 2:][q], tokens[:, :-2][q])
    # non-trigger transitions only go where cond[x_t] > 0
    b = seq.bigram[:, 1:-1]
    prev, nxt = tokens[:, 1:-1][b], tokens[:, 2:][b]
    assert (task.cond[prev, nxt] > 0).all()
    assert 0.02 < trigger[:, 1:].mean() < 0.5 and b.sum() > 0.5 * b.size


def test_first_token_follows_the_trigger_free_marginal():
    task = BigramBackcopy(length=3)
    x1 = task.generate(40_000, np.random.default_rng(5)).tokens[:, 1]
    p = np.where(task.is_trigger, 0.0, task.marginal)
    p /= p.sum()
    freq = np.bincount(x1, minlength=task.vocab) / x1.size
    assert 0.5 * np.abs(freq - p).sum() < 0.02  # total variation


@pytest.mark.parametrize(
    "task, token",
    [(BigramBackcopy(length=256), 53), (BigramBackcopy(source="zipf", zipf_vocab=40, length=256), 3)],
    ids=["shakespeare-o", "zipf-t3"],
)
def test_bigram_transitions_match_the_row(task, token):
    seq = task.generate(1000, np.random.default_rng(2))
    b = seq.bigram[:, :-1] & (seq.tokens[:, :-1] == token)
    assert not task.is_trigger[token]
    nxt = seq.tokens[:, 1:][b]
    assert nxt.size > 5000
    counts = np.bincount(nxt, minlength=task.vocab)
    p = task.cond[token]
    expected = p * nxt.size
    big = expected >= 5  # pool the rare successors into one bin
    obs = np.append(counts[big], counts[~big].sum())
    exp = np.append(expected[big], expected[~big].sum())
    keep = exp > 0
    assert stats.chisquare(obs[keep], exp[keep]).pvalue > 1e-3
    assert 0.5 * np.abs(counts / nxt.size - p).sum() < 0.05


def test_generation_is_deterministic_for_a_seeded_generator():
    task = BigramBackcopy(length=50)
    a = task.generate(32, np.random.default_rng(9))
    b = task.generate(32, np.random.default_rng(9))
    c = task.generate(32, np.random.default_rng(10))
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.trigger, b.trigger)
    assert not np.array_equal(a.tokens, c.tokens)


def test_length_override_and_empty_batch():
    task = BigramBackcopy(length=16)
    assert task.generate(3, np.random.default_rng(0), length=3).tokens.shape == (3, 3)
    assert task.generate(0, np.random.default_rng(0)).tokens.shape == (0, 16)
    with pytest.raises(ValueError, match=r"length=2 is out of range"):
        task.generate(3, np.random.default_rng(0), length=2)
    with pytest.raises(ValueError, match=r"n=-1"):
        task.generate(-1, np.random.default_rng(0))


def test_query_masks_align_with_targets(batch):
    task, seq = batch
    trigger_q, bigram_q = query_masks(seq)
    n, length = seq.tokens.shape
    assert trigger_q.shape == bigram_q.shape == (n, length - 1)
    targets = seq.tokens[:, 1:]  # (n, length - 1) query t predicts tokens[:, t + 1]
    assert not trigger_q[:, 0].any() and not bigram_q[:, 0].any()  # the BOS query is neither
    assert not (trigger_q & bigram_q).any()
    assert (trigger_q | bigram_q)[:, 1:].all()  # together they cover queries 1 .. length - 2
    np.testing.assert_array_equal(
        trigger_q, np.isin(seq.tokens[:, :-1], task.trigger_ids) & (np.arange(length - 1) >= 1)
    )
    # a trigger query's target is the back-copy of the token before the query
    t = np.nonzero(trigger_q)
    np.testing.assert_array_equal(targets[t], seq.tokens[t[0], t[1] - 1])


def test_generation_is_fast():
    task = BigramBackcopy(length=256)
    task.generate(1, np.random.default_rng(0))  # load the tables outside the timing
    best = np.inf
    for k in range(3):
        t0 = time.perf_counter()
        task.generate(512, np.random.default_rng(k))
        best = min(best, time.perf_counter() - t0)
    assert best < 0.5  # ~20 ms on one core; generous for shared CI


def test_decode():
    task = BigramBackcopy()
    ids = [task.bos] + [task.itos.index(c) for c in "to be"]
    assert task.decode(np.array(ids)) == "<bos>to be"
    zipf = BigramBackcopy(source="zipf", zipf_vocab=20)
    assert zipf.decode([20, 3, 17]) == "<bos> t3 t17"
    with pytest.raises(ValueError, match="token=67"):
        task.decode([1, 67])
    with pytest.raises(ValueError, match="shape"):
        task.decode(np.zeros((2, 3), dtype=np.int64))


# -- bad configs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({"triggers": 65}, r"triggers=65 is out of range: allowed \[1, 64\] for source='shakespeare'"),
        ({"source": "zipf", "zipf_vocab": 8, "triggers": 8}, r"triggers=8 is out of range: allowed \[1, 7\]"),
        ({"triggers": 0}, r"triggers=0 is out of range"),
        ({"length": 2}, r"length=2 is out of range: allowed \[3, 4096\]"),
        ({"source": "wiki"}, r"source='wiki' is not allowed: choose one of shakespeare, zipf"),
        ({"zipf_vocab": 3}, r"zipf_vocab=3 is out of range: allowed \[4, 2048\]"),
        ({"zipf_exponent": 0.0}, r"zipf_exponent=0 is out of range: allowed \(0, 10\]"),
        ({"table_seed": -1}, r"table_seed=-1 is out of range"),
        ({"length": 3.5}, r"length=3.5 is not an integer"),
    ],
)
def test_bad_configs_name_field_value_and_range(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        BigramBackcopy(**kwargs)


def test_config_round_trips():
    task = BigramBackcopy(source="zipf", zipf_vocab=32, triggers=2, table_seed=4)
    assert BigramBackcopy.from_dict(task.to_dict()) == task
    assert task.replace_text(length="128").length == 128
