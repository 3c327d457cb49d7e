"""What a request may cost: defaults fitted to a time budget, GPU batches planned from free memory, ZeroGPU
durations checked the way the platform computes them (spaces' own code)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch

from stylize.cost.budget import (
    COMPARE_BUDGET_S,
    HISTORY_BYTES_PER_PIXEL,
    MIN_COMPARE_SIZE,
    MIN_DEFAULT_STEPS,
    RUN_BUDGET_S,
    SAFETY,
    TRANSIENT,
    ZEROGPU_DEFAULT_S,
    ZEROGPU_FLOOR_S,
    Budget,
    ZeroGpu,
    bytes_per_pixel,
    fit_defaults,
    gpu_free_bytes,
    item_memory,
    memory_is_tight,
    mrf_bytes_per_pixel,
    patch_bank_bytes,
    plan_batches,
    release_cache_if_tight,
    usable_gpu_bytes,
)
from stylize.cost.timing import ENGINE_FACTOR, GPU_SECONDS_PER_MPX, StepCost
from stylize.errors import StylizeError
from stylize.params import Settings, defaults_for
from stylize.service.compute import out_of_memory_as_message

CPU = defaults_for("cpu")
GPU = defaults_for("cuda")


def per_mpx(floor_s: float, size=(512, 384), ratio: float = ENGINE_FACTOR) -> StepCost:
    """A time model from a bare pass's seconds at `size` and an engine/floor ratio (figures from the GUIDE)."""
    return StepCost(ratio * floor_s / (size[0] * size[1] / 1e6), "given")


# Engine steps at 512×384 on the three CPU kinds of this workplace, in the precision each gets (README,
# Performance, and GUIDE.md: AMX floor 153 ms × 1.31; AMD's Gram step 392 ms; the Xeon without AMX's fp32 floor
# 1243 ms × 1.1).
CPUS = {"Intel Xeon with AMX, bf16": per_mpx(0.153, ratio=1.31),
        "AMD EPYC Zen 4, bf16": per_mpx(0.392, ratio=1.0),
        "Intel Xeon without AMX, fp32": per_mpx(1.243, ratio=1.1)}


@pytest.mark.parametrize("name", list(CPUS))
def test_the_default_run_fits_45_seconds_on_every_cpu_kind(name):
    cost = CPUS[name]
    fitted = fit_defaults(cost, CPU, RUN_BUDGET_S, CPU.size)
    seconds = cost.seconds(fitted)
    print(f"{name}: {fitted.size} px, {fitted.steps} steps, {fitted.scales} levels, ≈ {seconds:.0f} s")
    assert seconds <= RUN_BUDGET_S * SAFETY
    assert fitted.scales == CPU.scales and fitted.steps >= MIN_DEFAULT_STEPS
    if fitted.size < CPU.size:  # as large as the budget allows: one step larger would not fit
        assert cost.seconds(fitted.replace(size=fitted.size + 32)) > RUN_BUDGET_S * SAFETY or fitted.steps < CPU.steps
    compare = fit_defaults(cost, fitted, COMPARE_BUDGET_S, fitted.size, batch=3, min_size=MIN_COMPARE_SIZE)
    assert cost.seconds(compare, batch=3) <= COMPARE_BUDGET_S * SAFETY, compare


def test_a_fast_machine_keeps_the_largest_size_and_a_slow_one_shrinks_steps_last():
    fast = StepCost(0.5, "given")
    assert fit_defaults(fast, CPU, RUN_BUDGET_S, 512) == CPU
    slow = StepCost(200.0, "given")
    fitted = fit_defaults(slow, CPU, RUN_BUDGET_S, 512)
    assert fitted.size == 320 and fitted.steps == MIN_DEFAULT_STEPS  # the floor: a smaller picture is not a demo


def test_bytes_per_pixel_covers_what_the_real_network_keeps_for_its_backward(stylizer):
    """From first principles: every tensor the real VGG-19 saves for its backward on the way to relu5_1, counted
    as autograd packs it (each storage once), at two sizes; the growth per output pixel (the weights, saved at
    both, cancel) must fit in the planner's per-pixel figure less its L-BFGS history, before its transient margin,
    and not by more than twice."""
    def saved_bytes(width: int, height: int) -> int:
        sizes: dict[int, int] = {}

        def pack(tensor):
            sizes[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
            return tensor

        x = torch.rand(1, 3, height, width, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            stylizer.net(x, {"relu5_1"}, "max")
        return sum(sizes.values())

    per_pixel = (saved_bytes(256, 192) - saved_bytes(128, 96)) / (256 * 192 - 128 * 96)
    budgeted = bytes_per_pixel(bf16=False) / TRANSIENT - HISTORY_BYTES_PER_PIXEL
    assert per_pixel <= budgeted <= 2 * per_pixel, (per_pixel, budgeted)


def test_batches_are_split_to_fit_the_free_gpu_memory():
    pixels = [1024 * 768] * 6  # six presets at 1024 px, fp32: ~3.3 GB each
    per = bytes_per_pixel(bf16=False)
    t4 = 15 * 2**30
    batches = plan_batches(pixels, t4, per, max_items=6)
    assert [k for batch in batches for k in batch] == list(range(6))  # every item, in order
    assert all(len(batch) * 1024 * 768 * per <= t4 - 2**30 for batch in batches) and len(batches) == 2
    assert plan_batches(pixels, 80 * 2**30, per, max_items=6) == [list(range(6))]  # an H100 takes all six
    assert plan_batches(pixels, 80 * 2**30, per, max_items=4) == [[0, 1, 2, 3], [4, 5]]
    with pytest.raises(StylizeError, match=r"needs about 12\.\d GB of GPU memory; 3\.0 GB are free: use a smaller size"):
        plan_batches([2048 * 1536], 4 * 2**30, per, max_items=6)


GiB = 2**30
IMAGE_1024 = 1024 * 768  # pixels of one 1024 px result of a 4:3 photo


def test_memory_pytorch_holds_unused_counts_as_free():
    # The driver sees 3 GB free on a 16 GB T4 after a run; PyTorch's cache holds 12 GB, of which 0.5 GB (the
    # weights) is in use: 14.5 GB are there for the next batch.
    assert usable_gpu_bytes(free=3 * GiB, reserved=12 * GiB, allocated=0.5 * GiB) == 14.5 * GiB
    assert usable_gpu_bytes(free=3 * GiB, reserved=2 * GiB, allocated=2 * GiB) == 3 * GiB  # nothing cached
    # Six fp32 images at 1024 px (4200 bytes a pixel: 3.08 GB each) in 14.5 − 1 GB: four, then two. From the
    # driver's figure alone not even one would fit.
    assert plan_batches([IMAGE_1024] * 6, 14.5 * GiB, 4200, max_items=6) == [[0, 1, 2, 3], [4, 5]]
    with pytest.raises(StylizeError, match=r"needs about 3\.1 GB of GPU memory; 2\.0 GB are free"):
        plan_batches([IMAGE_1024] * 6, 3 * GiB, 4200, max_items=6)


def test_the_cache_goes_back_only_when_the_driver_is_short():
    assert memory_is_tight(free=3 * GiB, total=16 * GiB)  # under a quarter of the card
    assert not memory_is_tight(free=5 * GiB, total=16 * GiB)
    assert not memory_is_tight(free=30 * GiB, total=80 * GiB)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine whose driver cannot answer")
def test_without_an_answer_from_the_driver_the_plan_assumes_8_gb_and_says_so(caplog):
    with caplog.at_level("WARNING", logger="stylize.cost.budget"):
        assert gpu_free_bytes(torch.device("cuda")) == 8 * GiB
    assert "torch.cuda.mem_get_info failed" in caplog.text and "as if 8 GB were free" in caplog.text
    assert not release_cache_if_tight(torch.device("cuda"))
    # 8 GB less the 1 GB reserve: two 1024 px fp32 images a batch.
    assert plan_batches([IMAGE_1024] * 3, 8 * GiB, bytes_per_pixel(bf16=False), max_items=3) == [[0, 1], [2]]


def test_the_patch_model_s_banks_and_maps_are_in_the_memory_model():
    # Banks at relu3_1 (256 channels) and relu4_1 (512), 3×3 patches, 4096 patches a layer, held twice: fp32
    # 4096·9·768·2·4 B = 216 MiB; bf16 4096·9·768·(2·2 + 4 for the fp32 copy while laying) B, also 216 MiB.
    layers = ("relu3_1", "relu4_1")
    assert patch_bank_bytes(layers, 3, bf16=False) == 216 * 2**20
    assert patch_bank_bytes(layers, 3, bf16=True) == 216 * 2**20
    assert patch_bank_bytes(layers, 5, bf16=False) == 600 * 2**20  # 25/9 as many values
    # Per output pixel: relu3_1's laid target (257 fp32 values on 1/16 of the pixels) = 64.25 B, relu4_1's
    # (513 on 1/64) = 32.0625 B, the match response (1024 patches at relu3_1) = 1024·4/16 = 256 B in fp32.
    assert mrf_bytes_per_pixel(layers, bf16=False) == 64.25 + 32.0625 + 256
    assert mrf_bytes_per_pixel(layers, bf16=True) == 64.25 + 32.0625 + 128
    mrf = GPU.replace(style_model="mrf", mrf_layers="relu3_1,relu4_1", mrf_patch=3)
    assert item_memory(mrf, bf16=False) == (4200 + 352.3125, 216 * 2**20)
    assert item_memory(GPU, bf16=False) == (4200, 0)
    # 14 GB free (13 after the reserve): Gram items take 3.08 GB each, four a batch; patch-model items
    # 786432·4552.3 B + 216 MiB = 3.55 GB each, three a batch.
    gram, patches = item_memory(GPU, False), item_memory(mrf, False)
    assert plan_batches([IMAGE_1024] * 6, 14 * GiB, gram[0], 6, fixed=gram[1]) == [[0, 1, 2, 3], [4, 5]]
    assert plan_batches([IMAGE_1024] * 6, 14 * GiB, patches[0], 6, fixed=patches[1]) == [[0, 1, 2], [3, 4, 5]]
    mixed = [gram, patches, gram, patches, gram, patches]  # Compare with both models: what each item needs
    assert plan_batches([IMAGE_1024] * 6, 14 * GiB, [m[0] for m in mixed], 6,
                        fixed=[m[1] for m in mixed]) == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize("config", [0, 1])
def test_zerogpu_charges_what_spaces_computes(config, monkeypatch):
    """Our figure for a request is the one spaces' own client computes (its duration factor per GPU)."""
    import json
    from importlib.resources import files

    from spaces.zero import client
    from spaces.zero import config as spaces_config

    entry = json.loads(files("spaces.zero").joinpath("configs.json").read_text())[config]
    monkeypatch.setattr(spaces_config, "get_config", lambda: entry)
    monkeypatch.setattr(client.config, "get_config", lambda: entry)
    rules = ZeroGpu.here()
    assert rules.duration_factor == entry["duration_factor"]
    for request in (ZEROGPU_FLOOR_S, 45, 200):
        assert rules.charged(request) == client.get_duration_seconds(timedelta(seconds=request), None)
    # The default run asks for at most a minute, whichever GPU the Space lands on.
    budget = Budget("cuda", StepCost.from_floor(None), rules)
    default = budget.fit(GPU, RUN_BUDGET_S, GPU.size)
    charged = rules.charged(budget.request(default))
    print(f"{entry['model']}: default {default.size} px, {default.steps} steps, asks {charged:.0f} s; "
          f"{budget.estimate(default)}")
    assert charged <= ZEROGPU_DEFAULT_S and "asks ZeroGPU for" in budget.estimate(default)


def test_zerogpu_requests_have_a_floor_and_a_ceiling():
    assert ZeroGpu.request(0.5) == ZEROGPU_FLOOR_S
    assert ZeroGpu.request(100) == 10 + 150
    blackwell = ZeroGpu(1.5)
    blackwell.check(200)  # 300 s charged: the most a task may take
    with pytest.raises(StylizeError, match=r"would ask ZeroGPU for 302 s \(201 s × this GPU's factor 1.5\), more "
                                           r"than the 300 s a task may take: use fewer steps"):
        blackwell.check(201)
    budget = Budget("cuda", StepCost(GPU_SECONDS_PER_MPX, "prior"), blackwell)
    with pytest.raises(StylizeError, match="ZeroGPU"):
        budget.check(GPU.replace(size=2048, steps=2000, style_model="mrf"), styles=4)


def test_an_out_of_memory_error_becomes_one_message_and_closes_the_run():
    closed = []

    def run():
        try:
            yield 1
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        finally:
            closed.append(True)

    items = out_of_memory_as_message(run())
    assert next(items) == 1
    with pytest.raises(StylizeError, match="the GPU ran out of memory: use a smaller size, or fewer presets"):
        next(items)
    assert closed


def test_a_request_over_the_ceiling_is_refused_naming_what_to_lower(monkeypatch):
    """Issue 30: off ZeroGPU one request may be estimated at most $STYLIZE_MAX_REQUEST_S (a default if unset); the
    estimate beside the button says so first. ZeroGPU keeps its own duration check instead."""
    from stylize.cost.budget import MAX_REQUEST_ENV, ceiling

    cpu = Budget("cpu", StepCost(1.0, "prior"), max_seconds=60)
    small, big = Settings(size=64, steps=10), Settings(size=512, steps=1000)
    cpu.check(small)
    with pytest.raises(StylizeError, match=r"this run would take ≈ .* on this CPU, more than the 60 s one request "
                                           r"may take here: lower the steps, the size or the number of images"):
        cpu.check(big)
    assert "over the 60 s a request may take here" in cpu.estimate(big)
    assert "over" not in cpu.estimate(small)
    Budget("cpu", StepCost(1.0, "prior"), max_seconds=0).check(big)  # 0: no ceiling
    zero = Budget("cuda", StepCost(1.0, "prior"), ZeroGpu(1.0), max_seconds=1)
    zero.check(Settings(size=64, steps=10))  # the platform's check, not the CPU ceiling
    monkeypatch.setenv(MAX_REQUEST_ENV, "")
    assert ceiling() > 0  # a default: unset is not "no ceiling"
    monkeypatch.setenv(MAX_REQUEST_ENV, "120")
    assert ceiling() == 120
    monkeypatch.setenv(MAX_REQUEST_ENV, "ten")
    with pytest.raises(StylizeError, match="STYLIZE_MAX_REQUEST_S='ten' is not a number"):
        ceiling()
