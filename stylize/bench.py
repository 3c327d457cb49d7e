"""``python -m stylize.bench``: the engine against its floor, on this device, in one run.

The floor is a bare VGG-19 forward and backward pass with respect to the image, up to the deepest layer the
default settings use, at the same size and precision: the cost no implementation of the method avoids.
Every figure is a median of repeated runs; floor and engine steps are interleaved so both see the same noise.
Results go to JSON, a Markdown table and a chart.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import torch
from PIL import Image

from . import images
from .engine import Stylizer, default_device, native_precision
from .params import Settings, defaults_for
from .vgg import deepest
from .weights import hub_cache_file, load_embedded, load_file, save_safetensors

PAINTINGS = Path(__file__).resolve().parent.parent.parent / "shared" / "paintings"


def reference_images() -> tuple[Image.Image, Image.Image, str]:
    """Tübingen and The Starry Night where present (the paper's Fig. 2), else generated stand-ins."""
    if (PAINTINGS / "tubingen.jpg").is_file() and (PAINTINGS / "starry_night.jpg").is_file():
        return (images.load_image(PAINTINGS / "tubingen.jpg", 1024), images.load_image(PAINTINGS / "starry_night.jpg", 1024),
                "tubingen.jpg × starry_night.jpg")
    gen = torch.Generator().manual_seed(0)
    photo = images.to_pil(torch.rand(1, 3, 48, 64, generator=gen).repeat_interleave(16, 2).repeat_interleave(16, 3))
    painting = images.to_pil(torch.rand(1, 3, 256, 256, generator=gen))
    return photo, painting, "generated images"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def floor_and_step(stylizer: Stylizer, content: Image.Image, style: Image.Image, size: int, repeats: int) -> dict:
    """Median seconds of a bare forward+backward and of one engine step, interleaved, at one size."""
    settings = Settings(size=size, steps=repeats + 3)
    width, height = images.fit_size(content.size, size)
    last = deepest(set(settings.style_layer_names) | {settings.content_layer})
    x = torch.rand(1, 3, height, width, device=stylizer.device, requires_grad=True)
    run = stylizer.run(content, [style], settings, preview_every=10**9)
    floors, steps = [], []
    next(run)  # the first step also computes the targets
    next(run)
    for _ in range(repeats):
        sync(stylizer.device)
        started = time.perf_counter()
        stylizer.net(x, {last}, settings.pooling)[last].float().sum().backward()
        sync(stylizer.device)
        floors.append(time.perf_counter() - started)
        started = time.perf_counter()
        next(run)
        steps.append(time.perf_counter() - started)
    run.close()
    floor, step = statistics.median(floors), statistics.median(steps)
    return {"size": f"{width}×{height}", "floor_s": floor, "step_s": step, "ratio": step / floor,
            "ratio_median_of_pairs": statistics.median(s / f for s, f in zip(steps, floors))}


def end_to_end(stylizer: Stylizer, content: Image.Image, style: Image.Image, settings: Settings) -> dict:
    """The app's default run: seconds to the first preview image and to the end."""
    started = time.perf_counter()
    first_preview = None
    for frame in stylizer.run(content, [style], settings, preview_every=1):
        if first_preview is None and frame.image is not None:
            first_preview = time.perf_counter() - started
    frame.image.save(Path(tempfile.gettempdir()) / "stylize-bench-default.png")
    return {"size": f"{frame.size[0]}×{frame.size[1]}", "steps": frame.total_steps, "first_preview_s": first_preview,
            "total_s": time.perf_counter() - started, "final_loss": frame.losses["total"]}


def quality_run(stylizer: Stylizer, judge: Stylizer, content: Image.Image, style: Image.Image,
                settings: Settings) -> dict:
    """A full run: its time, the fp32 objective of the saved 8-bit image, and the loss curve at the final size."""
    curve, frame = [], None
    final_size = images.fit_size(content.size, settings.size)
    for frame in stylizer.run(content, [style], settings, preview_every=10**9):
        if frame.size == final_size:
            curve.append((frame.elapsed, frame.losses["total"]))
    judged = judge.evaluate(frame.image, content, [style], settings)
    return {"steps": frame.total_steps, "total_s": frame.elapsed, "loss_8bit": judged["total"], "curve": curve}


def time_to(curve: list[tuple[float, float]], target: float) -> float | None:
    """Seconds until the loss first reaches `target` (None if never)."""
    return next((t for t, loss in curve if loss <= target), None)


def loss_at(curve: list[tuple[float, float]], seconds: float) -> float:
    """The loss a run had reached after `seconds` (its last value if it ended sooner)."""
    reached = [loss for t, loss in curve if t <= seconds]
    return reached[-1] if reached else curve[0][1]


def cold_start(quick: bool) -> dict:
    """Seconds to load the weights from each source (the Hub through a pre-filled cache, in a fresh process)."""
    result = {}
    started = time.perf_counter()
    embedded = load_embedded()
    result["embedded_s"] = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vgg19.safetensors"
        save_safetensors(embedded.convs, path)
        started = time.perf_counter()
        load_file(path)
        result["file_s"] = time.perf_counter() - started
        os.link(path, hub_cache_file(tmp))
        code = textwrap.dedent("""
            import time
            from stylize.weights import load_hub
            started = time.perf_counter()
            load_hub()
            print(time.perf_counter() - started)
        """)
        env = {**os.environ, "HF_HOME": tmp, "HF_HUB_OFFLINE": "1"}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                             cwd=Path(__file__).resolve().parent.parent)
        result["hub_cache_s"] = float(out.stdout.strip().splitlines()[-1])
    return result


def peak_memory_mb(device: torch.device) -> dict:
    peak = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        peak["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def markdown(report: dict) -> str:
    lines = [f"Device: {report['device']} · torch {report['torch']} · {report['threads']} threads · images: {report['images']}", "",
             "| precision | size | floor (fwd+bwd) | engine step | ratio |", "|---|---|---|---|---|"]
    for row in report["iterations"]:
        lines.append(f"| {row['precision']} | {row['size']} | {row['floor_s'] * 1000:.0f} ms | {row['step_s'] * 1000:.0f} ms | "
                     f"{row['ratio']:.2f}× |")
    e2e = report["default_run"]
    lines += ["", f"Default run ({e2e['size']}, {e2e['steps']} steps, {report['default_precision']}): first preview "
                  f"{e2e['first_preview_s']:.1f} s, total {e2e['total_s']:.1f} s.", "",
              f"| variant ({e2e['steps']} steps) | total time | loss of the saved 8-bit image (fp32 objective) | "
              "fp32 run's loss at that time |", "|---|---|---|---|"]
    for name, row in report["quality"].items():
        lines.append(f"| {name} | {row['total_s']:.1f} s | {row['loss_8bit']:.4g} | {row['fp32_loss_at_same_time']:.4g} |")
    ms = report["multiscale"]
    reached = "never" if ms["single_scale_reaches_it_s"] is None else f"after {ms['single_scale_reaches_it_s']:.1f} s"
    lines += ["", f"Multi-scale: 2 scales end at loss {ms['two_scales_loss']:.4g} after {ms['two_scales_s']:.1f} s; "
                  f"one scale reaches that loss {reached}."]
    cold = report["cold_start"]
    lines += ["", f"Cold start: embedded {cold['embedded_s']:.2f} s, local file {cold['file_s']:.2f} s, Hub cache "
                  f"{cold['hub_cache_s']:.2f} s. Peak RSS {report['memory']['peak_rss_mb']:.0f} MB"
              + (f", peak CUDA {report['memory']['peak_cuda_mb']:.0f} MB" if "peak_cuda_mb" in report["memory"] else "") + "."]
    return "\n".join(lines) + "\n"


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    rows = report["iterations"]
    labels = [f"{r['precision']}\n{r['size']}" for r in rows]
    xs = range(len(rows))
    left.bar([x - 0.2 for x in xs], [r["floor_s"] * 1000 for r in rows], 0.4, label="floor: VGG fwd+bwd")
    left.bar([x + 0.2 for x in xs], [r["step_s"] * 1000 for r in rows], 0.4, label="engine step")
    for x, r in zip(xs, rows):
        left.text(x + 0.2, r["step_s"] * 1000, f"{r['ratio']:.2f}×", ha="center", va="bottom", fontsize=8)
    left.set_xticks(list(xs), labels, fontsize=8)
    left.set_ylabel("ms per iteration (median)")
    left.set_title(f"Engine step vs floor — {report['device']}", fontsize=9)
    left.legend(fontsize=8)
    for name, row in report["quality"].items():
        t, loss = zip(*row["curve"])
        right.plot(t, loss, label=f"{name} (8-bit: {row['loss_8bit']:.3g})")
    right.set_yscale("log")
    right.set_xlabel("seconds")
    right.set_ylabel("total loss")
    right.set_title("Loss against time at the final size (default steps)", fontsize=9)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stylize.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: tiny sizes, few repeats (for CI)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="sizes for floor vs step (default 256 512)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per median (default 7)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default="bench-results", help="folder for bench.json, bench.md and bench.png")
    args = parser.parse_args(argv)
    quick = args.quick
    sizes = args.sizes or ([64, 96] if quick else [256, 512])
    repeats = args.repeats or (3 if quick else 7)
    device = torch.device(args.device) if args.device else default_device()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    content, style, source = reference_images()
    cold = cold_start(quick)
    weights = load_embedded()
    native = native_precision(device)
    precisions = ["fp32"] + (["bf16"] if native == "bf16" else [])
    stylizers = {p: Stylizer(weights, device, precision=p) for p in precisions}
    report: dict = {"device": torch.cuda.get_device_name() if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()})",
                    "torch": torch.__version__, "threads": torch.get_num_threads(), "images": source,
                    "default_precision": native, "iterations": [], "quality": {}}
    for size in sizes:
        for precision, stylizer in stylizers.items():
            row = {"precision": precision, **floor_and_step(stylizer, content, style, size, repeats)}
            report["iterations"].append(row)
            print(f"{precision} {row['size']}: floor {row['floor_s'] * 1000:.0f} ms, step {row['step_s'] * 1000:.0f} ms, "
                  f"ratio {row['ratio']:.2f}", flush=True)
    defaults = defaults_for(device.type)
    if quick:
        defaults = defaults.replace(size=64, steps=5)
    report["default_run"] = end_to_end(stylizers[native], content, style, defaults)
    print("default run:", {k: round(v, 3) if isinstance(v, float) else v for k, v in report["default_run"].items()}, flush=True)
    judge = stylizers["fp32"]
    base = Settings(size=defaults.size, steps=defaults.steps)
    variants = {f"{p}, content init": (stylizers[p], base) for p in precisions}
    variants[f"{native}, noise init"] = (stylizers[native], base.replace(init="noise"))
    variants[f"{native}, content init, 2 scales"] = (stylizers[native], base.replace(scales=2))
    for name, (stylizer, settings) in variants.items():
        report["quality"][name] = quality_run(stylizer, judge, content, style, settings)
    # Equal time: each variant's saved image against what the fp32 run had reached by then (fp32 objective).
    baseline = report["quality"]["fp32, content init"]["curve"]
    for name, row in report["quality"].items():
        row["fp32_loss_at_same_time"] = loss_at(baseline, row["total_s"])
        print(f"{name}: {row['steps']} steps in {row['total_s']:.1f} s, 8-bit loss {row['loss_8bit']:.4g} "
              f"(fp32 run at that time: {row['fp32_loss_at_same_time']:.4g})", flush=True)
    # Multi-scale pays only if single-scale needs longer to reach the loss it ends with (same precision).
    single, multi = report["quality"][f"{native}, content init"], report["quality"][f"{native}, content init, 2 scales"]
    report["multiscale"] = {"two_scales_s": multi["total_s"], "two_scales_loss": multi["curve"][-1][1],
                            "single_scale_reaches_it_s": time_to(single["curve"], multi["curve"][-1][1])}
    print("multi-scale:", report["multiscale"], flush=True)
    report["cold_start"] = cold
    report["memory"] = peak_memory_mb(device)
    (out / "bench.json").write_text(json.dumps(report, indent=1))
    (out / "bench.md").write_text(markdown(report))
    chart(report, out / "bench.png")
    print(markdown(report))
    print(f"wrote {out / 'bench.json'}, {out / 'bench.md'}, {out / 'bench.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
