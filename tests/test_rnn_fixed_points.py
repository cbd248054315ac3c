"""Fixed-point finding: known fixed points of hand-built maps, de-duplication, starts and PCA."""

import itertools

import numpy as np
import pytest
import torch

from engine.rnn.ensemble import EnsembleRNN
from engine.rnn.fixed_points import FixedPoints, find_fixed_points, network_step, project_pca, sample_starts

torch.set_num_threads(1)


def tanh_map(w: np.ndarray, c: np.ndarray | None = None):
    """step(h) = tanh(h @ W^T + c) for a batch h (B, n)."""
    w_t = torch.as_tensor(w, dtype=torch.float64)
    c_t = torch.zeros(w_t.shape[0], dtype=torch.float64) if c is None else torch.as_tensor(c, dtype=torch.float64)
    return lambda h: torch.tanh(h @ w_t.T + c_t)


def scalar_fixed_point(a: float, c: float = 0.0, h: float = 1.0) -> float:
    """The positive root of h = tanh(a h + c) by plain iteration (a stable point, so it converges)."""
    for _ in range(10_000):
        h = np.tanh(a * h + c)
    return float(h)


def uniform_starts(n_starts: int, n: int, *, seed: int, scale: float = 1.5) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-scale, scale, size=(n_starts, n))


def sort_rows(points: np.ndarray) -> np.ndarray:
    return points[np.lexsort(points.T[::-1])]


class TinyRNN(torch.nn.Module):
    """The ensemble contract, h_next = tanh(h W_h^T + x W_x^T + b), for K hand-set networks."""

    def __init__(self, w_h: np.ndarray, w_x: np.ndarray, b: np.ndarray) -> None:
        super().__init__()
        self.w_h = torch.nn.Parameter(torch.as_tensor(w_h, dtype=torch.float32))  # (K, n, n)
        self.w_x = torch.nn.Parameter(torch.as_tensor(w_x, dtype=torch.float32))  # (K, n, in)
        self.b = torch.nn.Parameter(torch.as_tensor(b, dtype=torch.float32))  # (K, n)

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """h (K, B, n), x (K, B, in) -> (K, B, n)."""
        drive = torch.einsum("kbi,kni->kbn", x, self.w_x) + self.b[:, None, :]
        return torch.tanh(torch.einsum("kbj,knj->kbn", h, self.w_h) + drive)


class FixedKRNN(TinyRNN):
    """Same maths, but the step reshapes with a stored K, so slicing parameters to one network breaks it."""

    def __init__(self, *args) -> None:
        super().__init__(*args)
        self.n_networks = self.w_h.shape[0]

    def step(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        h = h.reshape(self.n_networks, -1, h.shape[-1])
        return super().step(h, x)


# Known systems --------------------------------------------------------------------------------


def test_contracting_map_has_one_stable_fixed_point_at_the_origin():
    a = 0.5
    fp = find_fixed_points(tanh_map(a * np.eye(3)), uniform_starts(40, 3, seed=0))
    assert isinstance(fp, FixedPoints)
    assert len(fp) == 1 and fp.n_starts == 40
    np.testing.assert_allclose(fp.points[0], 0.0, atol=1e-10)
    np.testing.assert_allclose(fp.eigenvalues[0], a, atol=1e-10)
    assert fp.stable.tolist() == [True] and fp.n_unstable.tolist() == [0]


def test_expanding_scalar_map_has_an_unstable_origin_between_two_stable_points():
    a = 1.5
    h_star = scalar_fixed_point(a)
    fp = find_fixed_points(tanh_map(np.array([[a]])), uniform_starts(30, 1, seed=1))
    assert len(fp) == 3
    order = np.argsort(fp.points[:, 0])
    np.testing.assert_allclose(fp.points[order, 0], [-h_star, 0.0, h_star], atol=1e-5)
    assert fp.stable[order].tolist() == [True, False, True]
    slope = a * (1 - h_star**2)  # d tanh(a h)/dh at h*
    np.testing.assert_allclose(fp.eigenvalues[order, 0].real, [slope, a, slope], atol=1e-8)
    assert fp.eigenvalues.dtype == np.complex128


def test_constant_input_shifts_the_fixed_point():
    a, c = 0.5, 0.3
    step = lambda h, x: torch.tanh(a * h + x)  # noqa: E731
    fp = find_fixed_points(step, uniform_starts(10, 1, seed=2), x=np.array([c]))
    assert len(fp) == 1
    assert fp.points[0, 0] == pytest.approx(scalar_fixed_point(a, c), abs=1e-10)


def test_diagonal_2d_map_has_four_stable_corners_four_saddles_and_an_unstable_origin():
    h_star = scalar_fixed_point(2.0)
    fp = find_fixed_points(tanh_map(np.diag([2.0, 2.0])), uniform_starts(200, 2, seed=3))
    assert len(fp) == 9
    expected = np.array(list(itertools.product([-h_star, 0.0, h_star], repeat=2)))
    order = np.lexsort(fp.points.T[::-1])
    np.testing.assert_allclose(fp.points[order], sort_rows(expected), atol=1e-6)
    unstable = (np.abs(fp.points) < 1e-6).sum(1)  # each zero coordinate is one unstable direction
    assert fp.n_unstable.tolist() == unstable.tolist()
    assert sorted(fp.n_unstable.tolist()) == [0] * 4 + [1] * 4 + [2]
    assert fp.stable.sum() == 4 and (fp.stable == (fp.n_unstable == 0)).all()


# Speed, de-duplication, options ------------------------------------------------------------------


def test_found_points_are_fixed_and_distinct():
    step = tanh_map(np.diag([2.0, 2.0]))
    fp = find_fixed_points(step, uniform_starts(300, 2, seed=4), tol=1e-8)
    assert fp.n_starts == 300 and len(fp) == 9
    assert (fp.speed < 1e-8).all() and np.all(np.diff(fp.speed) >= 0)
    with torch.no_grad():
        residual = step(torch.from_numpy(fp.points)).numpy() - fp.points
    np.testing.assert_allclose(0.5 * (residual**2).sum(1), fp.speed, atol=1e-20)
    gaps = np.linalg.norm(fp.points[:, None] - fp.points[None], axis=-1) + np.eye(len(fp))
    assert gaps.min() > 1e-3


def test_adam_alone_meets_tol_and_unique_tol_merges_everything_it_covers():
    fp = find_fixed_points(tanh_map(np.diag([2.0, 2.0])), uniform_starts(100, 2, seed=5), newton=0)
    assert len(fp) == 9 and (fp.speed < 1e-8).all() and fp.iters_done < 2000
    merged = find_fixed_points(tanh_map(np.diag([2.0, 2.0])), uniform_starts(100, 2, seed=5), unique_tol=10.0)
    assert len(merged) == 1  # every point within 10 of the lowest-speed one


def test_points_that_are_not_fixed_are_dropped():
    step = lambda h: h + 1.0  # noqa: E731  (no fixed point anywhere: q = n/2 everywhere)
    fp = find_fixed_points(step, uniform_starts(5, 2, seed=6), iters=20)
    assert len(fp) == 0 and fp.points.shape == (0, 2) and fp.eigenvalues.shape == (0, 2)
    assert fp.iters_done == 20
    slow = find_fixed_points(step, uniform_starts(5, 2, seed=6), iters=20, keep_tol=2.0)  # q = 1 < keep_tol
    assert len(slow) == 5 and not slow.stable.any()  # q has zero gradient: nothing moves, all kept


def test_bad_arguments_are_rejected():
    step = tanh_map(np.eye(2))
    with pytest.raises(ValueError, match="lr"):
        find_fixed_points(step, np.zeros((2, 2)), lr=0.0)
    with pytest.raises(ValueError, match="starts"):
        find_fixed_points(step, np.zeros(2))
    with pytest.raises(ValueError, match="same shape"):
        find_fixed_points(lambda h: h[:, :1], np.zeros((2, 2)))


# Ensemble models ----------------------------------------------------------------------------------


def test_network_step_picks_network_k_of_a_tiny_module():
    # network 0 contracts (one point), network 1 is the 2-D diagonal map (nine points)
    w_h = np.stack([0.5 * np.eye(2), 2.0 * np.eye(2)])  # (2, 2, 2)
    model = TinyRNN(w_h, np.ones((2, 2, 1)), np.zeros((2, 2)))
    starts = uniform_starts(150, 2, seed=7)
    assert len(find_fixed_points(network_step(model, 0), starts)) == 1
    fp = find_fixed_points(network_step(model, 1), starts)
    assert len(fp) == 9 and sorted(fp.n_unstable.tolist()) == [0] * 4 + [1] * 4 + [2]
    # a constant input: network 0 under x = 0.3 has h = tanh(0.5 h + 0.3) in each unit
    fp = find_fixed_points(network_step(model, 0, x=np.array([0.3])), starts[:10])
    np.testing.assert_allclose(fp.points[0], scalar_fixed_point(0.5, 0.3), atol=1e-10)
    assert model.w_h.dtype == torch.float32  # the caller's model is untouched


def test_network_step_falls_back_when_the_step_cannot_be_sliced():
    w_h = np.stack([0.5 * np.eye(2), 2.0 * np.eye(2), -0.5 * np.eye(2)])  # (3, 2, 2)
    args = (w_h, np.zeros((3, 2, 1)), np.zeros((3, 2)))
    h = torch.from_numpy(uniform_starts(4, 2, seed=8))
    for k in range(3):
        np.testing.assert_allclose(network_step(FixedKRNN(*args), k)(h), network_step(TinyRNN(*args), k)(h))
    fp = find_fixed_points(network_step(FixedKRNN(*args), 1), uniform_starts(150, 2, seed=7))
    assert len(fp) == 9


def test_network_step_rejects_a_bad_network_or_input():
    model = TinyRNN(np.eye(2)[None], np.ones((1, 2, 1)), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="k must be"):
        network_step(model, 1)
    with pytest.raises(ValueError, match="x must"):
        network_step(model, 0, x=np.zeros(3))


@pytest.mark.skipif(not hasattr(EnsembleRNN, "step"), reason="EnsembleRNN.step not there yet")
@pytest.mark.parametrize("kwargs", [{}, {"parameterisation": "mup", "alpha": 0.5}], ids=["standard", "mup"])
def test_network_step_runs_on_an_untrained_ensemble_rnn(kwargs):
    n_in, n, n_out = 2, 8, 1
    model = EnsembleRNN(2, n_in, n, n_out, [0, 1], **kwargs)
    x = np.array([0.2, -0.1])
    with torch.no_grad():  # from h_0 = 0 the first forward state is one step
        _, hidden = model(torch.as_tensor(x, dtype=torch.float32).expand(2, 3, 1, n_in), return_hidden=True)
    for k in range(2):
        first = network_step(model, k, x=x)(torch.zeros(3, n, dtype=torch.float64))
        np.testing.assert_allclose(first.numpy(), hidden[k, :, 0].numpy(), atol=1e-6)
    fp = find_fixed_points(network_step(model, 1, x=x), uniform_starts(20, n, seed=9, scale=1.0), iters=300)
    assert (fp.speed < 1e-8).all() and fp.eigenvalues.shape == (len(fp), n)
    if not kwargs:  # small uniform weights contract: one stable point
        assert len(fp) == 1 and fp.stable.all()


# Starts and PCA ----------------------------------------------------------------------------------------


def test_sample_starts_is_seeded_and_shaped():
    hidden = np.random.default_rng(10).normal(size=(4, 25, 6))  # (trial, time, n)
    a = sample_starts(hidden, 50, noise=0.01, seed=3)
    assert a.shape == (50, 6) and a.dtype == np.float64
    np.testing.assert_array_equal(a, sample_starts(hidden, 50, noise=0.01, seed=3))
    assert not np.array_equal(a, sample_starts(hidden, 50, noise=0.01, seed=4))
    exact = sample_starts(hidden, 50, noise=0.0, seed=3)  # without noise every start is a visited state
    states = hidden.reshape(-1, 6)
    assert all(np.any(np.all(states == row, axis=1)) for row in exact)
    assert np.abs(a - exact).max() < 0.1
    assert sample_starts(hidden, 500, noise=0.0, seed=0).shape == (500, 6)  # more starts than states
    with pytest.raises(ValueError, match="hidden"):
        sample_starts(hidden[0], 5)


def test_pca_of_planar_data_needs_two_components():
    rng = np.random.default_rng(11)
    basis = np.linalg.qr(rng.normal(size=(10, 2)))[0].T  # (2, 10) orthonormal plane
    offset = rng.normal(size=10)
    hidden = rng.normal(size=(5, 40, 2)) @ basis + offset  # (trial, time, n) in a plane
    points = rng.normal(size=(3, 2)) @ basis + offset
    pca = project_pca(hidden, points, k=3)
    assert pca.components.shape == (3, 10) and pca.trajectories.shape == (5, 40, 3) and pca.points.shape == (3, 3)
    assert pca.explained[:2].sum() == pytest.approx(1.0, abs=1e-12) and pca.explained[2] < 1e-12
    np.testing.assert_allclose(pca.components @ pca.components.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(pca.trajectories[..., 2], 0.0, atol=1e-10)
    np.testing.assert_allclose(pca.points, pca.transform(points))
    # the two axes span the plane, so projecting back loses nothing
    np.testing.assert_allclose(pca.trajectories[..., :2] @ pca.components[:2] + pca.mean, hidden, atol=1e-10)
    assert project_pca(hidden).points is None
    assert project_pca(hidden[:, :2, :3], k=10).components.shape == (3, 3)  # k capped at the data's rank
