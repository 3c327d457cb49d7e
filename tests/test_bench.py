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
