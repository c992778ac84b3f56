"""FAB-T: the exact box-constrained projections, minimal distances on a linear model, eps, batches, errors."""

from __future__ import annotations

import pytest
import torch
from attacks_helpers import images, linear_classifier
from scipy.optimize import linprog, minimize

from robustlab.attacks import ATTACKS, fab_t, project_onto_hyperplane
from robustlab.attacks.fab import _fab_run


def _lp_min_linf(point: torch.Tensor, w: torch.Tensor, r: float) -> float | None:
    """min ||d||_inf s.t. w.d = r and 0 <= point + d <= 1, by linear programming (None when infeasible)."""
    dim = point.numel()
    upper = []
    for i in range(dim):  # -lam <= d_i <= lam
        upper.append([1.0 if j == i else 0.0 for j in range(dim)] + [-1.0])
        upper.append([-1.0 if j == i else 0.0 for j in range(dim)] + [-1.0])
    bounds = [(-float(p), 1 - float(p)) for p in point] + [(0, None)]
    res = linprog([0.0] * dim + [1.0], A_ub=upper, b_ub=[0.0] * (2 * dim), A_eq=[w.tolist() + [0.0]], b_eq=[r],
                  bounds=bounds)  # fmt: skip
    return float(res.fun) if res.status == 0 else None


def test_projection_is_the_least_linf_step_inside_the_box() -> None:
    gen = torch.Generator().manual_seed(0)
    for trial in range(60):
        point = torch.rand(1, 7, generator=gen, dtype=torch.float64)
        w = torch.randn(1, 7, generator=gen, dtype=torch.float64)
        if trial % 4 == 0:
            w[0, :3] = 0  # coordinates that cannot help
        r = float(torch.randn(1, generator=gen)) * 0.8
        d = project_onto_hyperplane(point, w, torch.tensor([r], dtype=torch.float64))
        best = _lp_min_linf(point[0], w[0], r)
        assert bool(((point + d) >= -1e-12).all() and ((point + d) <= 1 + 1e-12).all())
        assert bool((d[w == 0] == 0).all())
        if best is None:  # the hyperplane misses the box: every useful coordinate goes as far as it can
            assert abs(float((w * d).sum())) < abs(r)
        else:
            assert float((w * d).sum()) == pytest.approx(r, abs=1e-9)
            assert float(d.abs().max()) == pytest.approx(best, abs=1e-8)


def test_l2_projection_is_the_least_squares_step_inside_the_box() -> None:
    gen = torch.Generator().manual_seed(1)
    for trial in range(40):
        point = torch.rand(1, 6, generator=gen, dtype=torch.float64)
        w = torch.randn(1, 6, generator=gen, dtype=torch.float64)
        if trial % 4 == 0:
            w[0, :2] = 0
        capacity = torch.where(w > 0, 1 - point, torch.where(w < 0, point, torch.zeros_like(point)))
        r = float((w.abs() * capacity).sum()) * float(torch.rand(1, generator=gen))  # inside the box
        d = project_onto_hyperplane(point, w, torch.tensor([r], dtype=torch.float64), "l2")[0]
        best = minimize(lambda v: float((v**2).sum()), x0=[0.0] * 6, method="SLSQP",
                        bounds=[(-float(p), 1 - float(p)) for p in point[0]],
                        constraints=[{"type": "eq", "fun": lambda v, n=w[0].numpy(), r=r: float(n @ v) - r}],
                        options={"ftol": 1e-14, "maxiter": 500})  # fmt: skip
        assert float(w[0] @ d) == pytest.approx(r, abs=1e-9)
        assert bool(((point[0] + d) >= -1e-12).all() and ((point[0] + d) <= 1 + 1e-12).all())
        assert float(d.norm()) == pytest.approx(float(torch.tensor(best.x).norm()), abs=1e-6)


def _min_distance_to_misclassify(model, x: torch.Tensor, y: int, norm: str = "linf") -> float:
    """Exact minimal distance to leave class y for a linear model, ignoring the box (inactive here)."""
    with torch.no_grad():
        scale = 1 / model.std.flatten().repeat_interleave(x.numel() // 3)  # normalisation folded into w
        w, z = model.net[1].weight * scale, model(x[None])[0]
    dual = 1 if norm == "linf" else 2  # the dual norm of the normal
    return min(float((z[y] - z[k]) / torch.linalg.vector_norm(w[y] - w[k], ord=dual)) for k in range(10) if k != y)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_fab_finds_the_minimal_perturbation_of_a_linear_model(norm: str) -> None:
    assert ATTACKS.get("fab_t") is fab_t
    model = linear_classifier(size=8, seed=3)
    x = 0.4 + 0.2 * images(6, 8, seed=4)  # mid-range pixels: the box does not bind at these distances
    y = model(x).argmax(1)
    with torch.no_grad():
        target = model(x).argsort(1, descending=True)[:, 1]
    _, dist = _fab_run(model, x, y, target, steps=40, alpha_max=0.1, eta=1.05, beta=0.9, norm=norm)
    for i in range(6):
        exact = _min_distance_to_misclassify(model, x[i], int(y[i]), norm)
        assert exact - 1e-6 <= float(dist[i]) <= 1.05 * exact + 1e-6


def test_fab_t_breaks_only_within_eps_and_leaves_the_rest_clean() -> None:
    model = linear_classifier(size=8, seed=3)
    x = 0.4 + 0.2 * images(16, 8, seed=4)
    y = model(x).argmax(1)
    minimal = torch.tensor([_min_distance_to_misclassify(model, x[i], int(y[i])) for i in range(16)])
    eps = float(minimal.median())
    adv = fab_t(model, x, y, eps=eps, steps=40, n_targets=9)
    with torch.no_grad():
        broken = model(adv).argmax(1) != y
    assert float((adv - x).abs().amax()) <= eps + 1e-6
    # broken: every image whose nearest boundary lies within eps / 1.05 (the first success overshoots by 1.05), and
    # none whose nearest boundary lies beyond eps; the others come back clean
    assert bool(broken[minimal * 1.05 <= eps].all()) and not bool(broken[minimal > eps].any())
    assert 0 < int(broken.sum()) < 16
    assert bool((adv[~broken] == x[~broken]).all())


def test_fab_t_does_not_depend_on_the_batch(resnet20) -> None:
    x = images(3, 32, seed=2)
    with torch.no_grad():
        y = resnet20(x).argmax(1)
    together = fab_t(resnet20, x, y, eps=0.1, steps=5, n_targets=2)
    alone = fab_t(resnet20, x[1:2], y[1:2], eps=0.1, steps=5, n_targets=2)
    torch.testing.assert_close(together[1:2], alone, atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"n_targets": 10}, "n_targets"), ({"n_targets": 0}, "n_targets"), ({"alpha_max": 1.5}, "alpha_max"),
     ({"eta": 0.5}, "eta"), ({"beta": -1}, "beta"), ({"steps": 0}, "steps"), ({"eps": -1.0}, "eps"),
     ({"norm": "l1"}, "norm")],
)  # fmt: skip
def test_bad_arguments_are_refused_by_name(kwargs: dict, match: str) -> None:
    model = linear_classifier(size=8)
    x = images(2, 8)
    with pytest.raises(ValueError, match=match):
        fab_t(model, x, model(x).argmax(1), **kwargs)
