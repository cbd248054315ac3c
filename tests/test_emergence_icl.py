"""Reddy's bursty in-context classification: the data against its definition, the run, the science."""

import numpy as np
import pytest
import torch

from engine.emergence.config import EmergenceConfig
from engine.emergence.fits import fit_logistic
from engine.emergence.icl import BurstyICL, ICLRun, induction_scores

K, L, N, D = 64, 8, 8, 16


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_task(**overrides) -> BurstyICL:
    kw = dict(classes=K, labels=L, pairs=N, burstiness=4, bursty_fraction=0.5, zipf=0.0, noise=0.25, dim=D, seed=3)
    return BurstyICL(**{**kw, **overrides})


def counts_per_row(rows: np.ndarray) -> list[list[int]]:
    """The sorted multiplicities of the values in each row."""
    return [sorted(np.unique(r, return_counts=True)[1].tolist()) for r in rows]


def nearest_centre_cosine(task: BurstyICL, x: np.ndarray) -> np.ndarray:
    """(n,) the largest cosine between each vector of x (n, D) and any trained class centre."""
    c = task.centres / np.linalg.norm(task.centres, axis=1, keepdims=True)
    return (x / np.linalg.norm(x, axis=1, keepdims=True) @ c.T).max(axis=1)


# -- the task's fixed parts ----------------------------------------------------------------------


def test_centres_labels_and_zipf_law():
    task = make_task(zipf=1.3)
    assert task.centres.shape == (K, D) and task.label_vectors.shape == (L, D)
    np.testing.assert_array_equal(task.class_label, np.arange(K) % L)
    rank = np.arange(1, K + 1)
    np.testing.assert_allclose(task.class_p / task.class_p[0], rank**-1.3)
    assert task.class_p.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(make_task().class_p, 1.0 / K)  # alpha = 0: uniform
    with pytest.raises(ValueError):
        task.centres[0, 0] = 1.0


def test_centres_and_label_vectors_have_variance_one_over_d():
    task = make_task(classes=4096, labels=2048, dim=32)
    assert task.centres.var() == pytest.approx(1 / 32, rel=0.03)
    assert task.label_vectors.var() == pytest.approx(1 / 32, rel=0.03)
    assert (task.centres**2).sum(axis=1).mean() == pytest.approx(1.0, rel=0.02)
    assert abs(task.centres.mean()) < 0.005


def test_same_seed_same_task_and_batches():
    a, b = make_task(), make_task()
    np.testing.assert_array_equal(a.centres, b.centres)
    np.testing.assert_array_equal(a.label_vectors, b.label_vectors)
    x = a.sample(50, np.random.default_rng(5))
    y = b.sample(50, np.random.default_rng(5))
    for f in ("inputs", "target", "context_class", "context_label", "query_class"):
        np.testing.assert_array_equal(getattr(x, f), getattr(y, f))
    assert not np.array_equal(make_task(seed=4).centres, a.centres)
    z = a.sample(50, np.random.default_rng(6))
    assert not np.array_equal(x.inputs, z.inputs)


def test_burstiness_must_divide_pairs():
    with pytest.raises(ValueError, match="burstiness"):
        make_task(burstiness=3)
    with pytest.raises(ValueError, match="burstiness"):
        make_task().bursty(4, np.random.default_rng(0), burstiness=3)


# -- sequences -----------------------------------------------------------------------------------


@pytest.mark.parametrize("burstiness", [1, 2, 4, 8])
def test_bursty_context_holds_n_over_b_classes_each_b_times(burstiness):
    task = make_task(burstiness=burstiness)
    batch = task.bursty(300, np.random.default_rng(1))
    assert batch.inputs.shape == (300, 2 * N + 1, D) and batch.inputs.dtype == np.float32
    assert batch.context_class.shape == batch.context_label.shape == (300, N)
    assert batch.target.shape == batch.query_class.shape == (300,)
    assert counts_per_row(batch.context_class) == [[burstiness] * (N // burstiness)] * 300
    assert all(q in row for q, row in zip(batch.query_class, batch.context_class, strict=True))
    np.testing.assert_array_equal(batch.context_label, batch.context_class % L)
    np.testing.assert_array_equal(batch.target, batch.query_class % L)
    # the query's class is uniform over the N/B context classes, in shuffled order: P(first item's class) = B/N
    assert np.mean(batch.query_class == batch.context_class[:, 0]) == pytest.approx(burstiness / N, abs=0.1)
    assert np.mean(batch.context_class[:, 0] == batch.context_class[:, 1]) == pytest.approx(
        (burstiness - 1) / (N - 1), abs=0.1
    )


def test_bursty_classes_are_drawn_without_replacement_from_the_zipf_law():
    task = make_task(classes=3, pairs=4, burstiness=2, zipf=1.0)
    batch = task.bursty(20_000, np.random.default_rng(11))
    p = task.class_p  # (6, 3, 2) / 11
    # successive sampling of 2 classes: P(i drawn) = p_i + sum_{j != i} p_j p_i / (1 - p_j)
    inclusion = [p[i] + sum(p[j] * p[i] / (1 - p[j]) for j in range(3) if j != i) for i in range(3)]
    drawn = [(batch.context_class == i).any(axis=1).mean() for i in range(3)]
    np.testing.assert_allclose(drawn, inclusion, atol=0.01)


def test_steep_zipf_law_still_gives_distinct_classes():
    task = make_task(classes=500, zipf=10.0, burstiness=1)  # p(8) / p(1) = 8^-10: redrawing alone would stall
    batch = task.bursty(20, np.random.default_rng(12))
    assert counts_per_row(batch.context_class) == [[1] * N] * 20
    assert (batch.context_class == 0).any(axis=1).all() and (batch.context_class < 40).all()


def test_a_burstiness_override_is_checked():
    task = make_task(classes=4)
    with pytest.raises(ValueError, match="exceeds classes"):
        task.bursty(3, np.random.default_rng(0), burstiness=1)
    with pytest.raises(ValueError, match="exceeds classes"):
        make_task(classes=4, burstiness=1)


def test_sequence_layout_items_then_label_vectors():
    task = make_task(noise=0.0)
    batch = task.sample(40, np.random.default_rng(2))
    np.testing.assert_allclose(batch.inputs[:, 0:-1:2], task.centres[batch.context_class], atol=1e-6)
    np.testing.assert_allclose(batch.inputs[:, 1:-1:2], task.label_vectors[batch.context_label], atol=1e-6)
    np.testing.assert_allclose(batch.inputs[:, -1], task.centres[batch.query_class], atol=1e-6)


def test_item_norms_and_closeness_to_the_centre():
    eps = 0.5
    task = make_task(noise=eps, classes=1024, dim=64)
    batch = task.iid(2000, np.random.default_rng(3))
    items = batch.inputs[:, 0:-1:2].reshape(-1, 64).astype(float)  # (n N, D)
    centres = task.centres[batch.context_class.reshape(-1)]
    assert (items**2).sum(axis=1).mean() == pytest.approx(1.0, rel=0.02)  # x ~ N(0, I/D)
    # x = (mu + eps eta)/sqrt(1 + eps^2): the noise part has squared norm eps^2/(1 + eps^2) on average
    residual = items - centres / np.sqrt(1 + eps**2)
    assert (residual**2).sum(axis=1).mean() == pytest.approx(eps**2 / (1 + eps**2), rel=0.03)
    cosine = (items * centres).sum(1) / np.linalg.norm(items, axis=1) / np.linalg.norm(centres, axis=1)
    assert np.median(cosine) == pytest.approx(1 / np.sqrt(1 + eps**2), abs=0.03)


def test_iid_sequences_follow_the_zipf_law():
    task = make_task(zipf=1.0, classes=32)
    batch = task.iid(4000, np.random.default_rng(4))
    freq = np.bincount(batch.context_class.ravel(), minlength=32) / batch.context_class.size
    np.testing.assert_allclose(freq, task.class_p, atol=0.006)
    qfreq = np.bincount(batch.query_class, minlength=32) / 4000
    np.testing.assert_allclose(qfreq, task.class_p, atol=0.02)


def test_training_mixture_has_the_bursty_share():
    task = make_task(bursty_fraction=0.7, classes=4096)
    batch = task.sample(2000, np.random.default_rng(5))
    bursty = np.array([c == [4, 4] for c in counts_per_row(batch.context_class)])
    query_in_context = (batch.context_class == batch.query_class[:, None]).any(axis=1)
    # with K = 4096 an i.i.d. context rarely repeats a class (P ~ 0.7 %) or holds the query's (P ~ 0.2 %)
    assert bursty.mean() == pytest.approx(0.7, abs=0.035)
    assert query_in_context[bursty].all() and query_in_context[~bursty].mean() < 0.01
    assert not (batch.context_class >= 4096).any()


# -- evaluation sets -----------------------------------------------------------------------------


def test_icl_set_uses_new_classes_with_labels_drawn_per_sequence():
    task = make_task(noise=0.1, dim=64)
    rng = np.random.default_rng(6)
    batch = task.icl_eval(400, rng)
    assert (batch.context_class >= K).all() and (batch.query_class >= K).all()
    assert counts_per_row(batch.context_class) == [[4, 4]] * 400
    assert all(q in row for q, row in zip(batch.query_class, batch.context_class, strict=True))
    for row_class, row_label in zip(batch.context_class, batch.context_label, strict=True):
        assert len(set(row_label[row_class == row_class[0]])) == 1  # one label per new class
        assert len(set(row_label)) == 2  # distinct labels within the sequence
    match = batch.context_class == batch.query_class[:, None]
    np.testing.assert_array_equal(batch.target, batch.context_label[match].reshape(400, 4)[:, 0])
    # labels are not k mod L: they spread over all L labels
    assert set(np.unique(batch.target)) == set(range(L))
    # the new items are far from every trained centre; trained items are close to theirs
    new = nearest_centre_cosine(task, batch.inputs[:, -1])
    old = nearest_centre_cosine(task, task.bursty(400, rng).inputs[:, -1])
    assert new.max() < 0.7 < 0.95 < old.min()


def test_icl_set_with_another_burstiness():
    batch = make_task().icl_eval(50, np.random.default_rng(7), burstiness=1)
    assert counts_per_row(batch.context_class) == [[1] * N] * 50
    assert (np.sort(batch.context_label, axis=1)[:, 1:] != np.sort(batch.context_label, axis=1)[:, :-1]).all()


def test_iwl_set_never_shows_the_query_class():
    task = make_task(classes=16)  # small K: clashes are common and must be redrawn
    batch = task.iwl_eval(500, np.random.default_rng(8))
    assert not (batch.context_class == batch.query_class[:, None]).any()
    assert (batch.query_class < 16).all()
    np.testing.assert_array_equal(batch.target, batch.query_class % L)
    np.testing.assert_array_equal(batch.context_label, batch.context_class % L)


def test_swap_set_shifts_every_label_by_one_amount():
    task = make_task()
    batch = task.swap_eval(300, np.random.default_rng(9))
    shift = (batch.target - batch.query_class) % L
    assert (shift > 0).all()
    np.testing.assert_array_equal((batch.context_label - batch.context_class) % L, np.repeat(shift[:, None], N, 1))
    np.testing.assert_allclose(batch.inputs[:, 1:-1:2], task.label_vectors[batch.context_label])


# -- attention measures --------------------------------------------------------------------------


def test_induction_scores_of_ideal_heads():
    task = make_task()
    batch = task.icl_eval(20, np.random.default_rng(10))
    t = 2 * N + 1
    pattern = np.zeros((20, 2, t, t))
    pattern[:, :, np.arange(t), np.arange(t)] = 1.0  # every position attends to itself
    match = batch.context_class == batch.query_class[:, None]  # (n, N)
    pattern[:, 0, -1, :] = 0.0
    pattern[:, 0, -1, 1:-1:2] = match / match.sum(1, keepdims=True)  # head 0: query -> its class's labels
    label_pos = 2 * np.arange(N) + 1
    pattern[:, 1, label_pos, :] = 0.0
    pattern[:, 1, label_pos, label_pos - 1] = 1.0  # head 1: label -> previous item
    q2m, l2i = induction_scores(pattern, batch)
    np.testing.assert_allclose(q2m, [1.0, 0.0])
    np.testing.assert_allclose(l2i, [0.0, 1.0])
    uniform = np.tril(np.ones((t, t))) / np.arange(1, t + 1)[:, None]
    q2m, l2i = induction_scores(np.broadcast_to(uniform, (20, 1, t, t)), batch)
    np.testing.assert_allclose(q2m, [4 / t])
    np.testing.assert_allclose(l2i, [np.mean(1 / (label_pos + 1))])


# -- config and run ------------------------------------------------------------------------------


def test_config_rejects_burstiness_not_dividing_pairs():
    with pytest.raises(ValueError, match="burstiness=3"):
        EmergenceConfig.for_task("icl-bursty", pairs=8, burstiness=3)
    with pytest.raises(ValueError, match="classes"):
        EmergenceConfig.for_task("icl-bursty", pairs=8, burstiness=1, classes=4)
    EmergenceConfig.for_task("icl-bursty", pairs=12, burstiness=3)


def small_config(**overrides) -> EmergenceConfig:
    kw = dict(classes=128, labels=8, dim=16, width=32, batch=16, probe_batch=32, seed=2)
    return EmergenceConfig.for_task("icl-bursty", **{**kw, **overrides})


def test_run_probes_and_static():
    run = ICLRun(small_config(heads=2))
    assert run.model.cfg.input_dim == 16 and run.model.cfg.vocab == 8 and run.model.cfg.context == 2 * 8 + 1
    assert run.model.cfg.mlp_ratio == 0
    probed = run.probe()
    for name in ("icl_acc", "iwl_acc", "icl_loss", "iwl_loss", "swap_acc"):
        assert probed[name].dims == () and np.isfinite(probed[name].values)
    for name in ("query_to_match", "label_to_item"):
        assert probed[name].dims == ("layer", "head") and probed[name].values.shape == (2, 2)
        assert ((probed[name].values >= 0) & (probed[name].values <= 1)).all()
    assert probed["icl_loss"].values == pytest.approx(np.log(8), rel=0.05)  # near-uniform logits at init
    static = run.static()
    np.testing.assert_array_equal(static["layer"][0].values, [0, 1])
    np.testing.assert_array_equal(static["head"][0].values, [0, 1])
    assert static["layer"][1] and static["head"][1]  # coordinates
    assert all(p.units is not None and p.long_name for p in probed.values())


def test_run_is_deterministic_and_learns():
    losses, runs = [], []
    for _ in range(2):
        runs.append(ICLRun(small_config()))
        losses.append([runs[-1].train_step(s) for s in range(30)])
    assert losses[0] == losses[1]
    for name in ("icl_set", "iwl_set", "swap_set"):
        np.testing.assert_array_equal(getattr(runs[0], name).inputs, getattr(runs[1], name).inputs)
    assert np.mean(losses[0][-5:]) < np.mean(losses[0][:5])
    other = ICLRun(small_config(seed=3))
    assert [other.train_step(s) for s in range(3)] != losses[0][:3]


def test_clamping_a_head_through_the_model_hooks_changes_the_output():
    run = ICLRun(small_config(heads=2))
    inputs, _ = run.icl_set.tensors()
    with torch.no_grad():
        free = run.model(inputs)[:, -1]

        def zero_head(z, name):
            z = z.clone()
            z[:, 0] = 0.0
            return z

        with run.model.hooks({"blocks.1.attn.hook_z": zero_head}):
            clamped = run.model(inputs)[:, -1]
        again = run.model(inputs)[:, -1]
    assert not torch.allclose(free, clamped)
    torch.testing.assert_close(free, again)


def test_run_rejects_another_task():
    with pytest.raises(ValueError, match="icl-bursty"):
        ICLRun(EmergenceConfig.for_task("induction"))


# -- science: abrupt in-context learning, favoured by burstiness ---------------------------------


def icl_trace(steps: int, seed: int = 0, **overrides) -> dict[str, np.ndarray]:
    """Probe curves of the task defaults (with overrides): step, ICL and IWL accuracy, the two attention roles."""
    run = ICLRun(EmergenceConfig.for_task("icl-bursty", seed=seed, steps=steps, **overrides))
    rows = []
    for step in range(steps + 1):
        if step % run.cfg.probe_every == 0:
            p = run.probe()
            q2m, l2i = p["query_to_match"].values, p["label_to_item"].values  # (layer, head)
            rows.append((step, p["icl_acc"].values, p["iwl_acc"].values, q2m[1].max(), l2i[0].max()))
        if step < steps:
            run.train_step(step)
    names = ("step", "icl", "iwl", "query_to_match", "label_to_item")
    return dict(zip(names, np.array(rows, dtype=float).T, strict=True))


def late(trace: dict[str, np.ndarray], name: str) -> float:
    """Mean of the last three probes."""
    return float(trace[name][-3:].mean())


@pytest.mark.slow
def test_in_context_accuracy_jumps_after_a_plateau():
    trace = icl_trace(1000)  # the task defaults: K = 768, N = 8, B = 2
    step, icl = trace["step"], trace["icl"]
    # a plateau near the level of picking one of the N/B = 4 labels shown in context (1/4), above chance 1/L
    plateau = icl[(step >= 100) & (step <= 250)]
    assert 0.1 < plateau.min() and plateau.max() < 0.35 and abs(plateau.mean() - 0.25) < 0.1, plateau
    fit = fit_logistic(step[step >= 100], icl[step >= 100])  # after the first, fast rise to the plateau
    assert fit.ok and fit.lo == pytest.approx(0.25, abs=0.12) and fit.hi > 0.85
    assert 150 < fit.onset < 700  # after the plateau ...
    assert 2 * fit.width * np.log(9) < 350  # ... a 10-90 % rise in well under 350 steps
    assert late(trace, "icl") > 0.85 and late(trace, "iwl") < 0.4
    # Reddy's circuit forms with it: labels attend to their item (layer 0), the query to its class's labels (layer 1)
    assert trace["label_to_item"][0] < 0.3 < 0.8 < late(trace, "label_to_item")
    assert trace["query_to_match"][0] < 0.3 < 0.5 < late(trace, "query_to_match")


@pytest.mark.slow
def test_burstiness_favours_in_context_over_in_weights_learning():
    # K = 512: memorising the classes competes with learning in context (Reddy's trade-off)
    bursty, single = (icl_trace(1000, burstiness=b, classes=512) for b in (4, 1))
    assert late(bursty, "icl") > late(single, "icl") + 0.3
    assert late(single, "iwl") > late(bursty, "iwl") + 0.1
    # with B = 4 the induction head forms despite the competition (uniform attention would give 4/17)
    assert late(bursty, "query_to_match") > 0.4
