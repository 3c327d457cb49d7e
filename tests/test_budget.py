"""What a request may cost: defaults fitted to a time budget, GPU batches planned from free memory, ZeroGPU
durations checked the way the platform computes them (spaces' own code)."""

from __future__ import annotations

from datetime import timedelta

import pytest
import torch

from stylize.budget import (COMPARE_BUDGET_S, MIN_COMPARE_SIZE, MIN_DEFAULT_STEPS, RUN_BUDGET_S, SAFETY,
                            ZEROGPU_DEFAULT_S, ZEROGPU_FLOOR_S, ZEROGPU_MAX_S, Budget, ZeroGpu, bytes_per_pixel,
                            fit_defaults, plan_batches)
from stylize.errors import StylizeError
from stylize.machine import ENGINE_FACTOR, GPU_SECONDS_PER_MPX, StepCost
from stylize.params import Settings, defaults_for
from stylize.streaming import out_of_memory_as_message

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


def test_bytes_per_pixel_is_the_computed_activation_history_and_transient():
    # (2·64 + 2·128/4 + 4·256/16 + 4·512/64 + 512/256) = 290 conv outputs a pixel, each with its ReLU: 580 values
    assert bytes_per_pixel(bf16=False) == pytest.approx(1.5 * (580 * 4 + 2 * 20 * 3 * 4))
    assert bytes_per_pixel(bf16=True) == pytest.approx(1.5 * (580 * 2 + 480))


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
    assert ZEROGPU_MAX_S == 300
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
    """Issue 30: off ZeroGPU one request may be estimated at most $STYLIZE_MAX_REQUEST_S (300 s by default); the
    estimate beside the button says so first. ZeroGPU keeps its own duration check instead."""
    from stylize.budget import MAX_REQUEST_ENV, ceiling

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
    assert ceiling() == 300
    monkeypatch.setenv(MAX_REQUEST_ENV, "ten")
    with pytest.raises(StylizeError, match="STYLIZE_MAX_REQUEST_S='ten' is not a number"):
        ceiling()
