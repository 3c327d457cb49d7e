"""The benchmarks in their smoke mode: they run end to end and report (no timing assertions)."""

import json
import subprocess
import sys

from conftest import ROOT


def test_bench_quick_writes_json_markdown_and_a_chart(tmp_path):
    result = subprocess.run([sys.executable, "-m", "benchmarks.bench", "--quick", "--out", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "bench.json").read_text())
    assert {row["precision"] for row in report["iterations"]} >= {"fp32"}
    assert all(row["floor_s"] > 0 and row["step_s"] > 0 for row in report["iterations"])
    assert report["default_run"]["first_image_s"] <= report["default_run"]["total_s"]
    assert set(report["cold_start"]) == {"embedded_s", "file_s", "hub_cache_s"}
    for section in ("optimizer", "history", "schedule", "batch", "models"):
        assert report[section], section
    assert all(row["fp32_out_err"] < 5e-4 for row in report.get("gram", []))  # the Gram precision the README states
    text = (tmp_path / "bench.md").read_text()
    assert "| precision | size | floor (fwd+bwd) | engine step | ratio |" in text and "Coarse-to-fine" in text
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_grid_bench_times_a_small_grid_both_ways(stylizer, photo, painting, tmp_path):
    from benchmarks.grid import bench_grid
    from stylize.experiments.explore import Grid

    grid = Grid("style", rows=("a", "c"), columns=(2.0, 20.0))
    result = bench_grid(stylizer, photo, painting, size=64, steps=2, grid=grid, save_to=tmp_path / "grid.png")
    assert result["cells"] == 4 and result["shape"] == [2, 2] and result["steps"] == 2
    assert result["batched_s"] > 0 and result["sequential_s"] > 0
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gpu_bench_smoke_run_on_a_cpu_reports_every_section(tmp_path):
    """`python -m benchmarks.gpu --device cpu --quick`: every section present and consistent. No timing is asserted
    (only that times were taken): on a CPU the memory figures are computed, the measured ones not applicable."""
    result = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--device", "cpu", "--quick", "--steps", "4",
                             "--out", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "gpu.json").read_text())
    run = report["end_to_end"]
    assert run["steps"] == run["steps_done"] == 4 and 0 < run["first_image_s"] <= run["total_s"]
    assert run["anchors_s"] == {}  # the published 512 px × 500 times are shown only beside a run of that size
    assert {row["precision"] for row in report["steps"]} == {"fp32", "bf16"}
    for row in report["steps"]:
        assert row["floor_s"] > 0 and row["step_s"] > 0 and row["ratio"] == row["step_s"] / row["floor_s"]
    memory = {(r["model"], r["precision"]): r for r in report["memory"]["rows"]}
    assert report["memory"]["measured_with"].startswith("not applicable on a CPU") and report["memory"]["peak_rss_mb"] > 0
    assert all(r["measured_bytes_per_pixel"] is None for r in memory.values())
    # fp32 values take twice bf16's bytes; the patch model needs more than the Gram model, and its banks besides.
    assert memory["gram", "fp32"]["planned_bytes_per_pixel"] / memory["gram", "bf16"]["planned_bytes_per_pixel"] > 1
    assert memory["mrf", "fp32"]["planned_bytes_per_pixel"] / memory["gram", "fp32"]["planned_bytes_per_pixel"] > 1
    assert memory["mrf", "bf16"]["planned_fixed_bytes"] > 0 == memory["gram", "bf16"]["planned_fixed_bytes"]
    assert report["largest"] == "not applicable on a CPU"
    compare = report["compare_1024"]
    assert compare["size"] == "1024×768" and "runs" not in compare
    assert compare["computed"]["T4"] == [[0, 1, 2, 3], [4, 5]] and compare["computed"]["H100"] == [list(range(6))]
    (asked,) = report["zerogpu"]
    assert asked["asked_s"] >= 20 and asked["asked_over_taken"] == asked["asked_s"] / asked["taken_s"]
    assert asked["charged_rtx_pro_6000_s"] == 1.5 * asked["charged_h200_s"]
    text = (tmp_path / "gpu.md").read_text()
    assert "| precision | size | floor (fwd+bwd) | engine step | step / floor |" in text and "Largest size" in text
