"""Print size (#33): a finished result grown coarse to fine, in tiles where memory needs them, without seams."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import gradient_photo, stripes_painting
from PIL import Image

from benchmarks.lattice import seam_ratio
from stylize import images
from stylize.engine.enlarge import (
    enlarge,
    enlarge_sizes,
    pass_bytes,
    pieces,
    prepare_enlargement,
    reach,
    tiled_evaluate,
    tiles,
)
from stylize.engine.loop import Job
from stylize.engine.objective import build
from stylize.engine.schedule import plan_batch
from stylize.params import Settings


def test_levels_are_root_two_apart_from_the_result_to_the_target():
    assert enlarge_sizes((512, 384), 2048) == [(724, 543), (1024, 768), (1448, 1086), (2048, 1536)]
    assert enlarge_sizes((512, 384), 1024) == [(724, 543), (1024, 768)]


def test_the_halo_covers_the_deepest_layers_reach():
    assert reach("relu1_1") == 1 and reach("relu3_1") == 13
    assert reach("relu5_1") == 85


def test_pieces_cover_each_axis_once_and_move_with_the_offset():
    for offset in (0, 48, 96, 160):
        cut = pieces(1000, 256, offset)
        assert cut[0][0] == 0 and cut[-1][1] == 1000
        assert all(a[1] == b[0] for a, b in zip(cut, cut[1:]))
        assert all(e - s <= 1.5 * 256 for s, e in cut)
    assert pieces(1000, 256, 48) != pieces(1000, 256, 160)


def objective_at(stylizer, size=(256, 192), **changes):
    photo, painting = gradient_photo(*size), stripes_painting()
    job = Job(photo, [painting], Settings(size=max(size), **changes))
    plan = plan_batch([job])
    content = images.to_tensor(photo, stylizer.device)
    return build([job], [content], size, plan, stylizer.targets), plan, content


def test_tiles_give_the_whole_images_loss_and_gradient(stylizer):
    """Tiles with a halo as wide as the network's reach: the same loss and gradient as one pass, seams impossible
    by construction."""
    objective, plan, content = objective_at(stylizer)
    x = (content + 0.1 * torch.rand(content.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    whole = x.clone().requires_grad_(True)
    terms = stylizer.losses(whole, objective)
    (grad,) = torch.autograd.grad(terms[:, -1].sum(), whole)
    grid = tiles((256, 192), 64, 96, step=3)
    assert len(grid) >= 6  # really split
    tiled_terms, tiled_grad = tiled_evaluate(stylizer.net, objective, x, grid)
    assert torch.allclose(tiled_terms, terms.detach(), rtol=1e-4)
    assert (tiled_grad - grad).norm() / grad.norm() < 1e-4


def test_tiles_without_a_halo_would_not_agree(stylizer):
    """The halo is what makes them agree: cores evaluated alone give another gradient (seams)."""
    objective, plan, content = objective_at(stylizer)
    x = content.clone()
    _, exact = tiled_evaluate(stylizer.net, objective, x, tiles((256, 192), 64, 96, step=1))
    _, bare = tiled_evaluate(stylizer.net, objective, x, tiles((256, 192), 64, 0, step=1))
    assert (bare - exact).norm() / exact.norm() > 0.05


def test_the_seam_measure_sees_a_seam_and_not_its_absence():
    rng = np.random.default_rng(0)
    texture = rng.normal(128, 10, (128, 128, 3))
    assert abs(seam_ratio(texture, [64], [64]) - 1) < 0.15
    stepped = texture.copy()
    stepped[:, 64:] += 30  # one tile brighter than its neighbour
    assert seam_ratio(stepped, [64], []) > 2


def test_an_enlarged_result_has_new_detail_and_the_small_results_picture(stylizer):
    """×2 from a finished 128 px result, in tiles (a small memory budget): larger, finer detail than the result
    upsampled (the 96 px painting is not enlarged past its own pixels), no seam where tiles met, and seen at the small size it is the small result."""
    photo, painting = gradient_photo(128, 96), stripes_painting()
    settings = Settings(size=128, steps=40, scales=1, style_layers="c", content_layer="relu3_1")  # halo 16 px
    source = list(stylizer.run(photo, [painting], settings, report_every=40))[-1].image
    run = prepare_enlargement(stylizer, source, Job(photo, [painting], settings), 256, steps=6,
                              pass_budget=pass_bytes(100 * 100, "fp32"))
    frames = list(enlarge_frames(run))
    big = frames[-1].image
    assert big.size == (256, 192) and frames[-1].done
    assert run.borders, "the last level was not tiled"
    upsampled = source.resize(big.size, Image.BICUBIC)
    detail = _highpass(big)
    assert detail > 1.15 * _highpass(upsampled)  # 1.26× measured; the painting's own strokes, not blur
    from benchmarks.lattice import blur

    seen = lambda img: blur(np.asarray(img, float), 2.0)  # noqa: E731  (the picture seen whole: σ = 2 px)
    apart = np.abs(seen(images.resize(big, source.size)) - seen(source)).mean()
    assert apart < 0.4 * np.abs(seen(photo) - seen(source)).mean()  # 16 against the photo's 56 grey levels
    last = [b for b in run.borders if b[0] == len(run.plan.sizes) - 1]
    xs, ys = sorted({x for b in last for x in b[1]}), sorted({y for b in last for y in b[2]})
    assert xs and ys and seam_ratio(big, xs, ys) < 1.3  # every border the last level's tiles had


def enlarge_frames(run):
    from stylize.engine.loop import alone

    return alone(run)


def _highpass(img: Image.Image) -> float:
    from benchmarks.lattice import blur

    a = np.asarray(img.convert("RGB"), float)
    return float(((a - blur(a, 0.5)) ** 2).mean())


def test_smoothness_is_carried_up_and_steps_are_short(stylizer):
    """At k× the result's size TV weighs k² and calm k⁴ (a level starts smooth, so calm must act from the first
    step: README, Print size); every level's L-BFGS steps stay within ENLARGE_MAX_STEP."""
    from stylize.engine.enlarge import ENLARGE_MAX_STEP

    photo, painting = gradient_photo(128, 96), stripes_painting()
    settings = Settings(size=64, steps=4, scales=1, calm=30.0, tv_weight=2.0)
    run = prepare_enlargement(stylizer, photo.resize((64, 48)), Job(photo, [painting], settings), 256, steps=1)
    seen = []
    for frame in enlarge_frames(run):
        seen.append((run.plan.sizes[run.level], float(run.objective.calm[0]), float(run.objective.tv[0]),
                     run.optimizer.max_step))
    by_level = dict((size, rest) for size, *rest in seen)
    assert list(by_level) == [(91, 68), (128, 96), (181, 136), (256, 192)]
    for (width, _), (calm, tv, max_step) in by_level.items():
        k = width / 64
        assert calm == pytest.approx(30.0 * k**4, rel=1e-5) and tv == pytest.approx(2.0 * k**2, rel=1e-5)
        assert max_step == ENLARGE_MAX_STEP


def test_enlarge_refuses_a_smaller_target(stylizer):
    from stylize.errors import StylizeError

    with pytest.raises(StylizeError, match="already"):
        list(enlarge(stylizer, gradient_photo(128, 96), Job(gradient_photo(), [stripes_painting()]), 128))


def test_a_cpu_enlarges_to_2048_px_and_says_what_4096_would_cost():
    """The per-request ceiling: 2,048 px on a CPU, 4,096 on a GPU; ×4 costs more than ×2."""
    from stylize.cost.budget import Budget, Limits
    from stylize.cost.timing import StepCost
    from stylize.errors import StylizeError
    from stylize.params import defaults_for

    cpu, gpu = Limits.for_device("cpu", defaults_for("cpu")), Limits.for_device("cuda", defaults_for("cuda"))
    cpu.check_enlarge(2048)
    gpu.check_enlarge(4096)
    with pytest.raises(StylizeError, match="above this machine's 2048 px"):
        cpu.check_enlarge(4096)
    budget = Budget("cpu", StepCost(10.0, "test", overhead=0.5))
    double = budget.enlarge_seconds((512, 384), 1024, 6, tiled_above=2.6e6)
    # By hand: levels 724×543 and 1024×768, 6 steps and 2 target passes each at 10 s per megapixel-step, and
    # 0.5 s overhead for each of the 12 steps.
    assert double == pytest.approx(10.0 * (724 * 543 + 1024 * 768) / 1e6 * 8 + 0.5 * 12)
    quadruple = budget.enlarge_seconds((512, 384), 2048, 6, tiled_above=2.6e6)
    assert quadruple > 4 * double
    assert budget.enlarge_estimate((512, 384), 2048, 6, 2.6e6).endswith("on this CPU")


def test_the_scheduler_steps_an_enlargement_beside_other_runs_as_it_would_alone(stylizer):
    """One more run for the crowd's scheduler (#29): it takes turns with a Stylize run, never shares its pass, and
    comes out as it does stepped alone (fp32)."""
    import threading

    from stylize.engine.loop import alone
    from stylize.service.scheduler import Scheduler

    photo, painting = gradient_photo(96, 64), stripes_painting()
    settings = Settings(size=64, steps=4, scales=1)
    source = list(stylizer.run(photo, [painting], settings, report_every=4))[-1].image

    def enlargement():
        return prepare_enlargement(stylizer, source, Job(photo, [painting], settings), 128, steps=2)

    scheduler = Scheduler(4, float("inf"), lambda run: 1.0)  # a time model is not this test's subject
    out: dict = {}
    other = stylizer.prepare([Job(gradient_photo(seed=2), [painting], settings.replace(steps=6))], report_every=1)
    readers = [threading.Thread(target=lambda k=k, r=r: out.__setitem__(k, list(scheduler.frames(r))))
               for k, r in (("big", enlargement()), ("other", other))]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(300)
    big = out["big"][-1]
    assert big.done and out["other"][-1].done and not big.shared
    lone = list(alone(enlargement()))[-1]
    assert big.image.size == (128, 85) and np.array_equal(np.asarray(big.image), np.asarray(lone.image))
