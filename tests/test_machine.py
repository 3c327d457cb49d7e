"""The machine's precision and time model: the rule with given timings, the probe on this machine, the overrides."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT

from stylize.cost.timing import StepCost, megapixel_steps
from stylize.engine.precision import BF16_MARGIN, cpu_precision, gpu_precision, requested_precision, time_floor
from stylize.errors import StylizeError
from stylize.params import Settings


def test_the_cpu_rule_takes_bf16_only_where_it_is_faster():
    assert cpu_precision({}, amx=True).name == "bf16"  # AMX: bf16 by capability, nothing timed
    amd = cpu_precision({"fp32": 0.59, "bf16": 0.28}, amx=False)  # Zen 4 (GUIDE: 2.1× faster)
    assert amd.name == "bf16" and "2.1× faster" in amd.reason
    xeon = cpu_precision({"fp32": 0.350, "bf16": 0.499}, amx=False)  # Xeon without AMX (GUIDE: 1.4× slower)
    assert xeon.name == "fp32" and xeon.reason == "fp32 — bf16 measured 1.4× slower on this CPU"
    marginal = cpu_precision({"fp32": 1.0, "bf16": 1.0 / (BF16_MARGIN - 0.05)}, amx=False)
    assert marginal.name == "fp32" and "only" in marginal.reason
    assert cpu_precision({"fp32": 1.0}, amx=False).name == "fp32"


def test_the_gpu_rule_follows_native_bf16():
    assert gpu_precision((7, 5)).name == "fp32"  # T4: bf16 emulated
    assert gpu_precision((8, 0)).name == "bf16" and "8.0" in gpu_precision((8, 0)).reason
    assert gpu_precision((9, 0)).name == "bf16"


def test_a_bad_precision_is_refused_naming_the_choices(monkeypatch):
    monkeypatch.setenv("STYLIZE_PRECISION", "fp16")
    with pytest.raises(StylizeError, match="STYLIZE_PRECISION must be one of auto, fp32, bf16"):
        requested_precision()
    monkeypatch.setenv("STYLIZE_PRECISION", "BF16")
    assert requested_precision() == "bf16"
    assert requested_precision("fp32") == "fp32"  # the argument wins over the environment
    monkeypatch.delenv("STYLIZE_PRECISION")
    assert requested_precision() == "auto"


def test_the_environment_pins_an_engines_precision(embedded, monkeypatch):
    from stylize import Stylizer

    monkeypatch.setenv("STYLIZE_PRECISION", "fp32")
    engine = Stylizer(embedded, "cpu")
    assert engine.precision == "fp32" and engine.net.dtype == torch.float32
    assert "set by STYLIZE_PRECISION" in engine.chosen.reason


def test_the_probe_on_this_machine_agrees_with_the_floors_at_a_real_size(embedded):
    """The start-up probe (small image) and the bench's floor (256×192, medians) pick the same precision here,
    wherever the two precisions are not within the probe's margin of each other."""
    from stylize import Stylizer

    auto = Stylizer(embedded, "cpu", precision="auto")
    floors = {}
    for name in ("fp32", "bf16"):
        net = Stylizer(embedded, "cpu", precision=name).net
        floors[name] = statistics.median(time_floor(net, torch.device("cpu"), (256, 192), repeats=1) for _ in range(3))
    ratio = floors["fp32"] / floors["bf16"]
    print(f"probe: {auto.chosen.reason}; floors at 256×192: {floors} (fp32/bf16 {ratio:.2f})")
    if 1 / BF16_MARGIN < ratio < BF16_MARGIN * 1.1:
        pytest.skip(f"the two precisions are within the margin here ({ratio:.2f}): either choice is right")
    assert auto.precision == ("bf16" if ratio >= BF16_MARGIN else "fp32")


def test_work_is_counted_in_megapixel_steps():
    one = Settings(size=64, steps=10, scales=1)
    assert megapixel_steps(one) == pytest.approx((10 * 64 * 48 + 64 * 48) / 1e6)  # steps, plus the style's pass
    three = Settings(size=64, steps=9, scales=2)  # 45×34 then 64×48, 4 + 5 steps
    assert megapixel_steps(three) == pytest.approx((4 * 45 * 34 + 5 * 64 * 48 + 45 * 34 + 64 * 48) / 1e6)
    assert megapixel_steps(one, batch=3) == pytest.approx((3 * 10 * 64 * 48 + 64 * 48) / 1e6)
    assert megapixel_steps(one.replace(style_model="mrf"), styles=2) > 2.5 * megapixel_steps(one)  # matching


def test_the_time_model_learns_from_runs():
    cost = StepCost(10.0, "prior")
    settings = Settings(size=256, steps=100, scales=1)
    predicted = cost.seconds(settings)
    assert predicted == pytest.approx(10.0 * megapixel_steps(settings))
    cost.observe(settings, 2 * predicted)  # this machine is twice as slow as the probe said
    assert cost.seconds(settings) == pytest.approx(2 * predicted) and "1 run" in cost.source
    cost.observe(settings, predicted / 2, steps_done=25)  # a stopped run counts the steps it made
    cost.observe(settings, 2 * predicted)
    assert cost.seconds(settings) == pytest.approx(2 * predicted)  # a median: one odd run does not swing it
    cost.observe(settings, 1.0, steps_done=1)  # too short to say anything
    assert "3 runs" in cost.source


@pytest.mark.parametrize("command", [["-m", "stylize", "photo.jpg", "painting.jpg"], ["app.py"]])
def test_a_bad_precision_stops_the_cli_and_the_app_with_one_line(command):
    env = {**os.environ, "STYLIZE_PRECISION": "half", "STYLIZE_WEIGHTS": "embedded"}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, *command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "STYLIZE_PRECISION must be one of auto, fp32, bf16 (got 'half')" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    print(f"{command[-1]}: refused in {time.perf_counter() - started:.1f} s")


def test_an_x86_cpu_without_bf16_instructions_is_never_given_bf16():
    from stylize.engine.precision import lacks_bf16

    assert lacks_bf16({"architecture": "x86_64", "avx512_bf16": False, "amx_bf16": False})  # this workplace's Xeon
    assert not lacks_bf16({"architecture": "x86_64", "avx512_bf16": True, "amx_bf16": False})  # Zen 4: probe it
    assert not lacks_bf16({"architecture": "x86_64", "avx512_bf16": True, "amx_bf16": True})
    assert not lacks_bf16({"architecture": "aarch64"})  # elsewhere the probe decides


def test_a_stopped_run_is_credited_the_work_of_its_levels():
    """Levels are √2 apart: a run stopped after its first level did about a third of a three-level run's work,
    not the share of steps it took. By hand: 64 px, 2 levels (45×34, 64×48), 4 + 5 steps."""
    from stylize.cost.timing import work

    settings = Settings(size=64, steps=9, scales=2)
    assert work(settings, steps_done=4) == (4, pytest.approx((4 * 45 * 34 + 45 * 34) / 1e6))
    assert work(settings, steps_done=6) == (6, pytest.approx((4 * 45 * 34 + 2 * 64 * 48 + 45 * 34 + 64 * 48) / 1e6))
    assert work(settings) == (9, pytest.approx(megapixel_steps(settings)))
    assert work(settings, aspect=(1, 1))[1] > work(settings)[1]  # a square photo has more pixels than a 4:3 one


def test_the_time_model_is_calibrated_on_real_steps_as_a_line():
    """Two sizes' step times give the per-step overhead and the rate: 0.1 s + 2 s per megapixel, by hand."""
    cost = StepCost(10.0, "prior")
    cost.calibrate([(0.05, 0.2), (0.2, 0.5)])
    assert cost.overhead == pytest.approx(0.1) and cost.prior == pytest.approx(2.0)
    assert "engine steps" in cost.source
    settings = Settings(size=64, steps=10, scales=1)  # 64×48: 10 steps of 0.003072 MP and the style's pass
    assert cost.seconds(settings) == pytest.approx(10 * 0.1 + 2.0 * (11 * 64 * 48 / 1e6))
    before = cost.seconds(settings)
    cost.calibrate([(0.1, 0.5), (0.1, 0.6)])  # one size only: nothing to fit, nothing changes
    assert cost.seconds(settings) == before


def test_the_time_left_counts_the_larger_levels_still_to_come():
    """By hand, a model of 0.1 s a step and 2 s per megapixel-step: levels 45×34 and 64×48, 4 + 5 steps, a batch
    of 3. After the first level, 5 steps of three 64×48 images are left."""
    cost = StepCost(2.0, "given", overhead=0.1)
    sizes, steps = [(45, 34), (64, 48)], [4, 5]
    assert cost.seconds_left(sizes, steps, 4, items=3) == pytest.approx(5 * 0.1 + 2.0 * 3 * 5 * 64 * 48 / 1e6)
    assert cost.seconds_left(sizes, steps, 6, items=1) == pytest.approx(3 * 0.1 + 2.0 * 3 * 64 * 48 / 1e6)
    assert cost.seconds_left(sizes, steps, 9) == 0
