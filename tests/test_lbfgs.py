"""Our batched L-BFGS against torch.optim.LBFGS, its projection, its guard, and that a step never syncs."""

import pytest
import torch

from stylize.engine.lbfgs import LBFGS, times_history


def problem(n: int = 40, seed: int = 0):
    """A smooth, non-quadratic test function (a quadratic plus a quartic term), in float64."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, dtype=torch.float64, generator=gen)
    q = a @ a.T / n + 0.1 * torch.eye(n, dtype=torch.float64)
    b = torch.randn(n, dtype=torch.float64, generator=gen)
    x0 = torch.randn(n, dtype=torch.float64, generator=gen)
    return (lambda x: 0.5 * x @ q @ x - b @ x + 0.1 * (x**4).sum()), x0


def torch_iterates(f, x0, steps: int, history: int) -> list[torch.Tensor]:
    x = x0.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=1, history_size=history, tolerance_grad=-1, tolerance_change=-1)

    def closure():
        opt.zero_grad()
        loss = f(x)
        loss.backward()
        return loss

    out = []
    for _ in range(steps):
        opt.step(closure)
        out.append(x.detach().clone())
    return out


def our_iterates(fs, x0s, steps: int, history: int) -> list[torch.Tensor]:
    x = torch.stack(x0s).requires_grad_(True)
    opt = LBFGS(x, history=history, lower=None, upper=None, max_rise=float("inf"))
    out = []
    for _ in range(steps):
        losses = torch.stack([f(xi) for f, xi in zip(fs, x)])
        (grad,) = torch.autograd.grad(losses.sum(), x)
        opt.step(losses.detach(), grad)
        out.append(x.detach().clone())
    return out


@pytest.mark.parametrize("history", [5, 100])
def test_iterates_equal_torch_lbfgs_in_float64_for_50_steps(history):
    f, x0 = problem()
    reference = torch_iterates(f, x0, 50, history)
    ours = our_iterates([f], [x0], 50, history)
    assert max((a[0] - b).abs().max().item() for a, b in zip(ours, reference)) < 1e-10


def test_batch_items_are_independent_problems():
    (f1, x1), (f2, x2) = problem(seed=1), problem(seed=2)
    ours = our_iterates([f1, f2], [x1, x2], 30, 10)
    for item, (f, x0) in enumerate(((f1, x1), (f2, x2))):
        reference = torch_iterates(f, x0, 30, 10)
        assert max((a[item] - b).abs().max().item() for a, b in zip(ours, reference)) < 1e-10


def test_the_projection_keeps_bounds_and_stores_the_step_actually_taken():
    target = torch.linspace(-0.5, 1.5, 20, dtype=torch.float64)  # half the optimum lies outside [0, 1]
    x = torch.full((1, 20), 0.5, dtype=torch.float64, requires_grad=True)
    opt = LBFGS(x, history=10)
    evaluated = []
    for _ in range(30):
        evaluated.append(x.detach().clone())
        loss = ((x - target) ** 2).sum(1) + (x**4).sum(1)
        (grad,) = torch.autograd.grad(loss.sum(), x)
        kept_before = int(opt.valid.sum())
        opt.step(loss.detach(), grad)
        assert 0 <= x.min() and x.max() <= 1
        if len(evaluated) > 1 and int(opt.valid.sum()) > kept_before:  # a pair was stored at this step
            newest = int((opt.slot[0] - 1) % opt.m)
            assert torch.allclose(opt.hist[0, newest, 0], (evaluated[-1] - evaluated[-2])[0], atol=1e-15)
    grid = torch.linspace(0, 1, 100001, dtype=torch.float64)[:, None]  # the box optimum, coordinate by coordinate
    optimum = ((grid - target) ** 2 + grid**4).argmin(0).double() / 100000
    assert torch.allclose(x.detach()[0], optimum, atol=1e-4)
    assert x.detach()[0, 0] == 0  # held on the box's face, where the unconstrained optimum lies outside


def test_a_blow_up_is_backtracked_and_the_best_image_kept():
    f, x0 = problem(n=10)
    x = x0.clone().view(1, -1).requires_grad_(True)
    opt = LBFGS(x, history=10, lower=None, upper=None)
    losses = []
    for step in range(20):
        loss = f(x[0]).view(1)
        if step == 12:
            loss = loss.detach() * 0 + 1e6  # a step that lands far above the best loss seen
        (grad,) = torch.autograd.grad(f(x[0]), x)
        losses.append(float(loss.detach()))
        before = x.detach().clone()
        kept = int(opt.valid.sum())
        opt.step(loss.detach(), grad)
        if step == 12:
            assert torch.allclose(x.detach(), opt.best + 0.5 * (before - opt.best))  # halfway back to the best
            assert int(opt.valid.sum()) >= kept and opt.resets.item() == 1  # the history is kept
    assert opt.best_loss.item() == min(losses)


def test_a_non_finite_loss_restarts_from_the_best_image_with_a_fresh_history():
    f, x0 = problem(n=10)
    x = x0.clone().view(1, -1).requires_grad_(True)
    opt = LBFGS(x, history=10, lower=None, upper=None)
    for step in range(10):
        loss = f(x[0]).view(1)
        (grad,) = torch.autograd.grad(f(x[0]), x)
        if step == 6:
            loss = loss.detach() * float("nan")
        opt.step(loss.detach(), grad)
        if step == 6:
            assert torch.equal(x.detach(), opt.best) and not opt.valid.any() and opt.resets.item() == 1


def test_a_step_never_reads_a_value_back_to_the_host(monkeypatch):
    f, x0 = problem(n=10)
    x = torch.stack([x0, x0 + 1]).requires_grad_(True)
    opt = LBFGS(x, history=4)

    def forbidden(*args, **kwargs):
        raise AssertionError("host synchronisation inside a step")

    for _ in range(8):
        losses = torch.stack([f(xi) for xi in x])
        (grad,) = torch.autograd.grad(losses.sum(), x)
        with monkeypatch.context() as m:
            for name in ("item", "tolist", "__bool__", "__float__", "__int__", "numpy"):
                m.setattr(torch.Tensor, name, forbidden)
            opt.step(losses.detach(), grad)


@pytest.mark.parametrize("n", [7, 16 * 500, 16 * 500 + 13])  # fewer pixels than slices; a whole number of them; a tail
def test_the_sliced_history_product_equals_the_plain_one(n):
    gen = torch.Generator().manual_seed(n)
    hist = torch.randn(2, 5, 2, n, dtype=torch.float64, generator=gen)  # 2 items, 5 (s, y) pairs
    vectors = torch.randn(2, 3, n, dtype=torch.float64, generator=gen)
    expected = torch.einsum("bkn,bmjn->bkmj", vectors, hist)
    assert torch.allclose(times_history(vectors, hist), expected, rtol=1e-12, atol=1e-12)
    assert torch.allclose(times_history(vectors, hist[:, :4]), expected[:, :, :4], rtol=1e-12, atol=1e-12)  # a view


def test_a_step_longer_than_max_step_is_shortened_along_its_direction():
    target = torch.full((2, 50), 100.0, dtype=torch.float64)  # far away: the quasi-Newton step jumps ~100 per element
    target[1] = 0.01  # near: item 1's steps stay short, untouched
    x = torch.zeros(2, 50, dtype=torch.float64, requires_grad=True)
    free = x.detach().clone().requires_grad_(True)
    capped, uncapped = LBFGS(x, lower=None, upper=None, max_step=0.05), LBFGS(free, lower=None, upper=None)
    for _ in range(4):
        for opt, xs in ((capped, x), (uncapped, free)):
            loss = 0.5 * ((xs - target) ** 2).sum(1)
            (grad,) = torch.autograd.grad(loss.sum(), xs)
            before = xs.detach().clone()
            opt.step(loss.detach(), grad)
            if opt is capped:
                moved = xs.detach() - before
                assert moved[0].pow(2).mean().sqrt() <= 0.05 + 1e-12  # RMS per element
                assert torch.allclose(moved[0] / moved[0].norm(), -grad[0] / grad[0].norm())  # the same direction
    assert torch.allclose(x.detach()[1], free.detach()[1])  # short steps are left alone
    assert x.detach()[0].mean() > 0.1  # and long ones still make progress
