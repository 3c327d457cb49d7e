"""A batched, projected, sync-free L-BFGS: B independent images optimized together, one step per evaluation.

Why not `torch.optim.LBFGS`: its two-loop recursion walks the history one small op at a time (on a GPU ~1,000
kernel launches and ~200 host synchronisations per step with history 100) and it knows nothing of bounds or of
batches. Here the direction comes from the compact representation of Byrd, Nocedal & Schnabel (1994):

    H g = γ g + S p₁ + γ Y p₂,   p₂ = −R⁻¹ Sᵀg,   p₁ = R⁻ᵀ((D + γ YᵀY) R⁻¹ Sᵀg − γ Yᵀg)

with R the upper triangle of SᵀY (chronological order) and D its diagonal. The history sits in one
preallocated (B, 2, m, n) buffer on the image's device; per step it is read twice, by two batched matrix
products: [S; Y]ᵀ[g, s, y] (which also keeps the small m×m matrices SᵀY and YᵀY up to date) and the
combination above. Everything else is m×m work. Nothing is read back to the host inside a step.

Iterates equal `torch.optim.LBFGS(lr=1, max_iter=1, line_search_fn=None)` on an unconstrained problem (tested in
float64): the first step is −g scaled by min(1, 1/‖g‖₁), later steps are −H g with unit length, and a pair is
kept only when sᵀy > 1e-10. Differences, for the image problem:

- **Projection**: the new image is clamped to its bounds, and the pair stored is the displacement actually
  taken, so clamped pixels do not corrupt the curvature pairs.
- **A guard**: an image whose loss exceeds `max_rise` × the best loss seen so far is not stepped from; the next
  image is halfway back to the best one (a backtracking step; repeated, it converges on the best image), the
  history kept — the pair that rose is still a true secant pair. A non-finite loss or gradient sends that item
  back to its best image with a fresh history. Both are counted in `resets`. The best image and its loss are
  kept per item (`best`, `best_loss`): that, not merely the last iterate, is the result.
- **Batches**: each item has its own history, γ and guard; items are independent (the objective's gradient
  with respect to item b depends only on item b), so one VGG pass serves all of them.
"""

from __future__ import annotations

import torch

# Pairs kept. `python -m stylize.bench` (history study, README: Performance): after 200 steps at 256 px the saved
# image's loss is 0.1729 / 0.1719 / 0.1715 / 0.1713 for m = 10 / 20 / 50 / 100, while the optimizer's own step
# costs ~3 ms at m = 20 against ~13–38 ms at m = 100 (it reads the whole history twice per step): at equal time
# m = 20 is ahead, and keeps the optimizer under 5 % of a step.
HISTORY = 20
MAX_RISE = 1.5  # a loss above 1.5× the best so far is a blow-up, not L-BFGS's usual small non-monotone bumps
CURVATURE_EPS = 1e-10  # torch.optim.LBFGS's threshold on sᵀy for keeping a pair


class LBFGS:
    """Minimizes B independent objectives over `x` (B, ...) in place, within bounds [lower, upper]."""

    def __init__(self, x: torch.Tensor, history: int = HISTORY, lower: torch.Tensor | float | None = 0.0,
                 upper: torch.Tensor | float | None = 1.0, max_rise: float = MAX_RISE) -> None:
        b, n, m = x.shape[0], x[0].numel(), history
        self.x, self.m, self.max_rise = x, m, max_rise
        self.lower, self.upper = lower, upper
        kw = dict(dtype=x.dtype, device=x.device)
        self.hist = torch.zeros(b, 2, m, n, **kw)  # [S; Y], in ring-buffer slot order
        self.sy = torch.zeros(b, m, m, **kw)  # s_i·y_j by slot
        self.yy = torch.zeros(b, m, m, **kw)  # y_i·y_j by slot
        self.valid = torch.zeros(b, m, **kw)  # 1 where a slot holds a kept pair
        self.gamma = torch.ones(b, **kw)  # H₀ = γI, γ = sᵀy / yᵀy of the newest kept pair
        self.fresh = torch.ones(b, dtype=torch.bool, device=x.device)  # no step taken since start or reset
        self.prev_x = torch.zeros(b, n, **kw)
        self.prev_g = torch.zeros(b, n, **kw)
        self.best = x.detach().clone()
        self.best_loss = torch.full((b,), torch.inf, **kw)
        self.resets = torch.zeros(b, dtype=torch.long, device=x.device)
        self.improved = torch.zeros(b, dtype=torch.bool, device=x.device)  # the last evaluation was the best so far
        self.slot = torch.zeros(b, dtype=torch.long, device=x.device)  # each item's next ring slot
        self.steps = 0
        # Chronological order of the slots for each position of the newest slot, oldest first.
        ring = torch.arange(m, device=x.device)
        self._orders = torch.stack([(ring + p + 1) % m for p in range(m)])

    @torch.no_grad()
    def step(self, loss: torch.Tensor, grad: torch.Tensor) -> None:
        """Take one step from `self.x`, given its per-item losses (B,) and gradient (like x)."""
        x = self.x.detach()
        b = x.shape[0]
        flat_x, g = x.reshape(b, -1), grad.detach().reshape(b, -1).to(x.dtype)
        finite = torch.isfinite(loss) & torch.isfinite(g).all(1)
        rise = finite & (loss - self.best_loss > (self.max_rise - 1) * self.best_loss.abs())
        self.improved = finite & (loss < self.best_loss)
        self.best_loss = torch.where(self.improved, loss.to(self.best_loss.dtype), self.best_loss)
        self.best.copy_(torch.where(_expand(self.improved, x), x, self.best))
        g = torch.where(finite[:, None], g, 0)  # keep NaN out of the shared products

        if self.steps:  # a pair from a step that rose is still a true secant pair: kept
            history_g = self._remember(flat_x - self.prev_x, g - self.prev_g, ~self.fresh & finite, g)
        else:
            history_g = torch.bmm(self.hist.view(b, 2 * self.m, -1), g.unsqueeze(2)).squeeze(2)
        direction, scale = self._direction(g, history_g)
        self.prev_x.copy_(flat_x)
        self.prev_g.copy_(g)

        best = self.best.reshape(b, -1)
        moved = flat_x + scale[:, None] * direction
        halfway = best + 0.5 * (flat_x - best)  # backtrack towards the best image (inside the bounds: both are)
        new = torch.where(rise[:, None], halfway, torch.where(finite[:, None], moved, best)).view_as(x)
        if self.lower is not None or self.upper is not None:
            new = new.clamp(self.lower, self.upper)
        x.copy_(new)
        self.resets += (rise | ~finite).long()
        self._reset(~finite)
        self.fresh &= ~finite
        self.steps += 1

    def rebase(self, items: list[int]) -> None:
        """The objective of `items` changed (e.g. new patch matches): the next evaluation starts a new best."""
        self.best_loss[items] = torch.inf

    def _remember(self, s: torch.Tensor, y: torch.Tensor, usable: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Store (s, y) in each item's next ring slot where it is usable and sᵀy > ε (else change nothing).

        Returns [S; Y]ᵀg (B, 2m) of the updated history: computed in the same pass over it as the new pair's
        products, so a step reads the history twice, not three times."""
        b, m = s.shape[0], self.m
        items, slot = torch.arange(b, device=s.device), self.slot
        ys = (s * y).sum(1)
        keep = usable & (ys > CURVATURE_EPS)
        new = torch.stack([s, y], dim=1)  # (B, 2, n)
        self.hist[items, :, slot] = torch.where(keep[:, None, None], new, self.hist[items, :, slot])
        # One pass over the whole history: [S; Y]ᵀ [s, y, g] gives every new entry of SᵀY and YᵀY, and Sᵀg, Yᵀg.
        products = torch.bmm(self.hist.view(b, 2 * m, -1), torch.stack([s, y, g], dim=1).transpose(1, 2))  # (B, 2m, 3)
        k = keep[:, None]
        self.sy[items, :, slot] = torch.where(k, products[:, :m, 1], self.sy[items, :, slot])  # s_i · y
        self.sy[items, slot, :] = torch.where(k, products[:, m:, 0], self.sy[items, slot, :])  # s · y_j
        self.yy[items, :, slot] = torch.where(k, products[:, m:, 1], self.yy[items, :, slot])
        self.yy[items, slot, :] = self.yy[items, :, slot]
        self.valid[items, slot] = torch.where(keep, 1.0, self.valid[items, slot])
        self.gamma = torch.where(keep, ys / (y * y).sum(1).clamp_min(torch.finfo(ys.dtype).tiny), self.gamma)
        self.slot = (slot + keep.long()) % m
        return products[:, :, 2]

    def _direction(self, g: torch.Tensor, history_g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """−H g per item, and the step length: min(1, 1/‖g‖₁) for an item's first step, else 1.

        `history_g` is [S; Y]ᵀg (B, 2m) by slot."""
        b, m = g.shape[0], self.m
        order = self._orders[(self.slot - 1) % m]  # (B, m): each item's slots, oldest first
        v = self.valid.gather(1, order)
        products = history_g.view(b, 2, m)
        a = (products[:, 0].gather(1, order) * v).unsqueeze(2)  # Sᵀg, chronological, unused slots 0
        c = (products[:, 1].gather(1, order) * v).unsqueeze(2)  # Yᵀg
        rows, cols = order[:, :, None].expand(-1, -1, m), order[:, None, :].expand(-1, m, -1)
        mask2 = v[:, :, None] * v[:, None, :]
        sy = self.sy.gather(1, rows).gather(2, cols) * mask2
        yy = self.yy.gather(1, rows).gather(2, cols) * mask2
        diag = torch.diagonal(sy, dim1=1, dim2=2)
        r = torch.triu(sy) + torch.diag_embed(1 - v)  # unused slots: identity rows, exact no-ops
        gamma = self.gamma[:, None, None]
        u = torch.linalg.solve_triangular(r, a, upper=True)
        p1 = torch.linalg.solve_triangular(r.transpose(1, 2), diag.unsqueeze(2) * u + gamma * (yy @ u) - gamma * c,
                                           upper=False)
        coef = torch.zeros(b, 2, m, dtype=g.dtype, device=g.device)
        coef[:, 0].scatter_(1, order, p1.squeeze(2))
        coef[:, 1].scatter_(1, order, (-gamma * u).squeeze(2))
        hvec = self.gamma[:, None] * g + torch.bmm(coef.view(b, 1, 2 * m), self.hist.view(b, 2 * m, -1)).squeeze(1)
        first = torch.clamp(1.0 / g.abs().sum(1).clamp_min(torch.finfo(g.dtype).tiny), max=1.0)
        scale = torch.where(self.fresh, first, torch.ones_like(first))
        return -hvec, scale

    def _reset(self, items: torch.Tensor) -> None:
        """Forget the history of `items` (a bool mask): they start again from their best image."""
        self.valid *= (~items).to(self.valid.dtype)[:, None]
        self.gamma = torch.where(items, torch.ones_like(self.gamma), self.gamma)
        self.fresh |= items


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))
