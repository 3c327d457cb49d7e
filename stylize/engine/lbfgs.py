"""A batched, projected, sync-free L-BFGS: B independent images optimized together, one step per evaluation.

Why not `torch.optim.LBFGS`: its two-loop recursion walks the history one small op at a time (on a GPU ~1,000
kernel launches and ~200 host synchronisations per step with history 100) and it knows nothing of bounds or of
batches. Here the direction comes from the compact representation of Byrd, Nocedal & Schnabel (1994):

    H g = γ g + S p₁ + γ Y p₂,   p₂ = −R⁻¹ Sᵀg,   p₁ = R⁻ᵀ((D + γ YᵀY) R⁻¹ Sᵀg − γ Yᵀg)

with R the upper triangle of SᵀY (chronological order) and D its diagonal. The history sits in one
preallocated (B, m + 1, 2, n) buffer of (s_i, y_i) pairs on the image's device; per step it is read twice, by
two batched matrix products: [s, y, g]ᵀ[S; Y] (which also keeps the small m×m matrices SᵀY and YᵀY up to date)
and the combination above. Everything else is m×m work. Nothing is read back to the host inside a step.

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
- **A trust region** (`max_step`, off by default): a step whose RMS change per element exceeds it is
  shortened along its direction. Unit-length L-BFGS steps can be wildly long where the curvature pairs are
  poor (after a coarse-to-fine level change they slammed pixels into their bounds step after step, each
  undone by the guard); the stored pair is still the step taken, a true secant pair.
- **Batches**: each item has its own history, γ and guard; items are independent (the objective's gradient
  with respect to item b depends only on item b), so one VGG pass serves all of them.
"""

from __future__ import annotations

import torch

# Pairs kept. The history study (`python -m benchmarks.bench`, README: Performance): at equal time m = 20, 50 and 100
# end within 0.2 % of each other on both machines measured; m = 20 keeps the optimizer's memory and its share of a
# step smallest (a step reads the whole history twice: m = 100's costs 4× as much).
HISTORY = 20
MAX_RISE = 1.5  # a loss above 1.5× the best so far is a blow-up, not L-BFGS's usual small non-monotone bumps
CURVATURE_EPS = 1e-10  # torch.optim.LBFGS's threshold on sᵀy for keeping a pair


class LBFGS:
    """Minimizes B independent objectives over `x` (B, ...) in place, within bounds [lower, upper]."""

    def __init__(self, x: torch.Tensor, history: int = HISTORY, lower: torch.Tensor | float | None = 0.0,
                 upper: torch.Tensor | float | None = 1.0, max_rise: float = MAX_RISE,
                 max_step: float | None = None) -> None:
        """`max_step`: the largest root-mean-square change of one step, per element (None: no limit)."""
        b, n, m = x.shape[0], x[0].numel(), history
        self.x, self.m, self.max_rise, self.max_step = x, m, max_rise, max_step
        self.lower, self.upper = lower, upper
        kw = dict(dtype=x.dtype, device=x.device)
        # (s_i, y_i) by ring slot, and one spare slot (m) where a step's pair goes when it is not kept: the
        # store is then one unconditional write, not a read, a select and a write of the slot.
        self.hist = torch.zeros(b, m + 1, 2, n, **kw)
        self.sy = torch.zeros(b, m, m, **kw)  # s_i·y_j by slot
        self.yy = torch.zeros(b, m, m, **kw)  # y_i·y_j by slot
        self.valid = torch.zeros(b, m, **kw)  # 1 where a slot holds a kept pair
        self.gamma = torch.ones(b, **kw)  # H₀ = γI, γ = sᵀy / yᵀy of the newest kept pair
        self.fresh = torch.ones(b, dtype=torch.bool, device=x.device)  # no step taken since start or reset
        self.prev_x = torch.zeros(b, n, **kw)
        self.vectors = torch.zeros(b, 3, n, **kw)  # this step's s, y and g: the rows of one product with [S; Y]
        self._zero = torch.zeros((), **kw)
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
        """Take one step from `self.x`, given its per-item losses (B,) and gradient (like x).

        Vector work goes into preallocated buffers, and no pass over the image's size is made twice: with the
        spare slot and the chunked product, the optimizer's own step at 512 px went from 17.8 to 8.3 ms (Intel
        Xeon with AMX, m = 20), two thirds of it the two reads of the history."""
        x = self.x.detach()
        b = x.shape[0]
        flat_x, raw = x.reshape(b, -1), grad.detach().reshape(b, -1).to(x.dtype)
        finite = torch.isfinite(loss) & torch.isfinite(raw.sum(1))  # a NaN or ±inf anywhere makes the sum so
        rise = finite & (loss - self.best_loss > (self.max_rise - 1) * self.best_loss.abs())
        self.improved = finite & (loss < self.best_loss)
        self.best_loss = torch.where(self.improved, loss.to(self.best_loss.dtype), self.best_loss)
        torch.where(_expand(self.improved, x), x, self.best, out=self.best)
        s, y, g = self.vectors.unbind(1)
        if self.steps:  # g still holds the last gradient; a non-finite item's pair is never kept
            torch.sub(flat_x, self.prev_x, out=s)
            torch.sub(raw, g, out=y)
        torch.where(finite[:, None], raw, self._zero, out=g)  # keep NaN out of the shared products

        if self.steps:  # a pair from a step that rose is still a true secant pair: kept
            history_g = self._remember(~self.fresh & finite)
        else:  # no pair stored yet: nothing to read
            history_g = torch.zeros(b, self.m, 2, dtype=x.dtype, device=x.device)
        new, scale = self._direction(g, history_g)  # H g, in a fresh tensor
        if self.max_step is not None:  # a trust region: shorten a step longer than max_step (RMS per element)
            rms = scale * torch.linalg.vector_norm(new, dim=1) / new.shape[1] ** 0.5
            scale = scale * torch.clamp(self.max_step / rms.clamp_min(torch.finfo(rms.dtype).tiny), max=1.0)
        self.prev_x.copy_(flat_x)
        torch.addcmul(flat_x, new, -scale[:, None], out=new)  # x − scale · H g

        # After a rise, back halfway to the best image (inside the bounds: both are); after NaN, to the best image.
        back = rise | ~finite
        best = self.best.reshape(b, -1)
        fallback = torch.where(finite[:, None], torch.lerp(best, flat_x, 0.5), best)  # exact: x may hold NaN
        new = torch.where(back[:, None], fallback, new, out=new).view_as(x)
        if self.lower is not None or self.upper is not None:
            new.clamp_(self.lower, self.upper)
        x.copy_(new)
        self.resets += back.long()
        self._reset(~finite)
        self.fresh &= ~finite
        self.steps += 1

    def rebase(self, items: list[int]) -> None:
        """The objective of `items` changed (e.g. new patch matches): the next evaluation starts a new best."""
        self.best_loss[items] = torch.inf

    def _remember(self, usable: torch.Tensor) -> torch.Tensor:
        """Store this step's (s, y) in each item's next ring slot where it is usable and sᵀy > ε (else change
        nothing).

        Returns [S; Y]ᵀg (B, m, 2) of the updated history: computed in the same pass over it as the new pair's
        products, so a step reads the history twice, not three times."""
        b, m = self.vectors.shape[0], self.m
        s, y, _ = self.vectors.unbind(1)
        items, slot = torch.arange(b, device=s.device), self.slot
        ys = _dot(s, y)
        keep = usable & (ys > CURVATURE_EPS)
        self.hist[items, torch.where(keep, slot, m)] = self.vectors[:, :2]
        # One pass over the whole history: [s, y, g]ᵀ[S; Y] gives every new entry of SᵀY and YᵀY, and Sᵀg, Yᵀg.
        products = times_history(self.vectors, self.hist[:, :m])  # (B, 3, m, 2): by slot, (s_i, y_i)
        k = keep[:, None]
        self.sy[items, :, slot] = torch.where(k, products[:, 1, :, 0], self.sy[items, :, slot])  # s_i · y
        self.sy[items, slot, :] = torch.where(k, products[:, 0, :, 1], self.sy[items, slot, :])  # s · y_j
        self.yy[items, :, slot] = torch.where(k, products[:, 1, :, 1], self.yy[items, :, slot])
        self.yy[items, slot, :] = self.yy[items, :, slot]
        self.valid[items, slot] = torch.where(keep, 1.0, self.valid[items, slot])
        self.gamma = torch.where(keep, ys / _dot(y, y).clamp_min(torch.finfo(ys.dtype).tiny), self.gamma)
        self.slot = (slot + keep.long()) % m
        return products[:, 2]

    def _direction(self, g: torch.Tensor, history_g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """H g per item (the step is its opposite), and the step length: min(1, 1/‖g‖₁) for an item's first
        step, else 1.

        `history_g` is [S; Y]ᵀg (B, m, 2): by slot, (s_i·g, y_i·g)."""
        b, m = g.shape[0], self.m
        order = self._orders[(self.slot - 1) % m]  # (B, m): each item's slots, oldest first
        v = self.valid.gather(1, order)
        a = (history_g[..., 0].gather(1, order) * v).unsqueeze(2)  # Sᵀg, chronological, unused slots 0
        c = (history_g[..., 1].gather(1, order) * v).unsqueeze(2)  # Yᵀg
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
        coef = torch.zeros(b, m, 2, dtype=g.dtype, device=g.device)  # by slot, like the history
        coef[..., 0].scatter_(1, order, p1.squeeze(2))
        coef[..., 1].scatter_(1, order, (-gamma * u).squeeze(2))
        pairs = self.hist[:, :m].reshape(b, 2 * m, -1)
        hvec = torch.bmm(coef.view(b, 1, 2 * m), pairs).squeeze(1).addcmul_(g, self.gamma[:, None])
        first = torch.clamp(1.0 / torch.linalg.vector_norm(g, 1, dim=1).clamp_min(torch.finfo(g.dtype).tiny), max=1.0)
        scale = torch.where(self.fresh, first, torch.ones_like(first))
        return hvec, scale

    def _reset(self, items: torch.Tensor) -> None:
        """Forget the history of `items` (a bool mask): they start again from their best image."""
        self.valid *= (~items).to(self.valid.dtype)[:, None]
        self.gamma = torch.where(items, torch.ones_like(self.gamma), self.gamma)
        self.fresh |= items


def times_history(vectors: torch.Tensor, hist: torch.Tensor, chunks: int = 16) -> torch.Tensor:
    """(B, k, n) vectors times every stored vector of (B, m, 2, n) pairs: (B, k, m, 2).

    A product this flat (k = 3 rows against 2m, over every pixel) runs far below the memory's speed as one
    matmul; split into `chunks` slices of the pixels, done as one batched matmul and summed, it streams the
    history near the speed of a bare read of it. Per item: on a GPU a handful of launches, no synchronisation."""
    b, k, n = vectors.shape
    m = hist.shape[1]
    rows = hist.reshape(b, 2 * m, n)
    length = n // chunks
    cut = length * chunks
    out = []
    for i in range(b):
        whole = torch.bmm(vectors[i, :, :cut].view(k, chunks, length).transpose(0, 1),
                          rows[i, :, :cut].view(2 * m, chunks, length).permute(1, 2, 0)).sum(0)
        if cut < n:
            whole = whole + vectors[i, :, cut:] @ rows[i, :, cut:].T
        out.append(whole)
    return torch.stack(out).view(b, k, m, 2)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise a · b for (B, n) rows, with no (B, n) temporary."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))
