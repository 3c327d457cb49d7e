"""``python -m benchmarks.bench``: the engine against its floor, on this device, in one run.

The floor is a bare VGG-19 forward and backward pass with respect to the image, up to the deepest layer the
default settings use, at the same size and precision: the cost no implementation of the method avoids.
Every figure is a median of repeated runs; floor and engine steps are interleaved so both see the same noise.
Studies (each a section, `--only` picks some): floor vs step, the optimizer's own share, Gram precision,
history size, coarse-to-fine schedule, batch size, the MRF and masked models' cost, the default run, cold
start, peak memory. Results go to JSON, a Markdown report and a chart. Run it from the repository root.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from stylize import images
from stylize.cost.budget import RUN_BUDGET_S, Budget
from stylize.engine.lbfgs import LBFGS
from stylize.engine.loop import Job, Stylizer
from stylize.engine.losses import gram
from stylize.engine.precision import cpu_name, default_device
from stylize.engine.schedule import schedule
from stylize.engine.vgg import deepest
from stylize.engine.weights import hub_cache_file, load_embedded, load_file, save_safetensors
from stylize.params import Settings, defaults_for

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("steps", "optimizer", "gram", "history", "schedule", "batch", "models", "guard", "default", "cold")


def reference_images() -> tuple[Image.Image, Image.Image, str]:
    """Tübingen and The Starry Night (the paper's Fig. 2), committed as an example photo and a preset."""
    photo, painting = ROOT / "presets" / "photos" / "tubingen.jpg", ROOT / "presets" / "starry_night.jpg"
    if photo.is_file() and painting.is_file():
        return images.load_image(photo, 1024), images.load_image(painting, 1024), "tubingen × starry_night"
    gen = torch.Generator().manual_seed(0)
    photo_img = images.to_pil(torch.rand(1, 3, 48, 64, generator=gen).repeat_interleave(16, 2).repeat_interleave(16, 3))
    return photo_img, images.to_pil(torch.rand(1, 3, 256, 256, generator=gen)), "generated images"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(device: torch.device, fn: Callable[[], object]) -> float:
    sync(device)
    started = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - started


def floor_and_step(stylizer: Stylizer, content: Image.Image, style: Image.Image, settings: Settings,
                   repeats: int, masks: list | None = None, styles: list | None = None) -> dict:
    """Median seconds of a bare forward+backward and of one engine step, interleaved, at one size."""
    settings = settings.replace(steps=repeats + 3)
    width, height = images.fit_size(content.size, settings.size)
    last = deepest(settings.layers_in_use)
    x = torch.rand(1, 3, height, width, device=stylizer.device, requires_grad=True)
    run = stylizer.run(content, styles or [style], settings, report_every=10**9, masks=masks)
    next(run)  # the first steps also compute the targets and warm the allocator
    next(run)
    floors, steps = [], []
    device = stylizer.device
    for _ in range(repeats):
        floors.append(timed(device, lambda: stylizer.net(x, {last}, settings.pooling)[last].float().sum().backward()))
        steps.append(timed(device, lambda: next(run)))
    run.close()
    with torch.no_grad():
        feats = stylizer.net(x, set(settings.style_layer_names), settings.pooling)
    feats = [f.detach().requires_grad_(True) for f in feats.values()]
    grams = [timed(device, lambda: torch.autograd.grad(sum(gram(f).sum() for f in feats), feats)) for _ in range(repeats)]
    floor, step = statistics.median(floors), statistics.median(steps)
    return {"size": f"{width}×{height}", "floor_s": floor, "step_s": step, "ratio": step / floor,
            "gram_s": statistics.median(grams)}


def optimizer_share(stylizer: Stylizer, content: Image.Image, size: int, history: int, repeats: int) -> dict:
    """Seconds of one `LBFGS.step` with a full history at the image's size (everything outside VGG and losses)."""
    width, height = images.fit_size(content.size, size)
    x = torch.rand(1, 3, height, width, device=stylizer.device)
    opt = LBFGS(x, history=history)
    gen = torch.Generator(device="cpu").manual_seed(0)
    grads = [torch.randn(1, 3, height, width, generator=gen).to(stylizer.device) for _ in range(4)]
    loss = torch.ones(1, device=stylizer.device)
    for k in range(history + 2):  # fill the history (a quadratic-like problem keeps pairs)
        opt.step(loss * (1 - k * 1e-4), grads[k % 4] * 1e-3 + 1e-3 * x)
    seconds = [timed(stylizer.device, lambda k=k: opt.step(loss, grads[k % 4] * 1e-3 + 1e-3 * x)) for k in range(repeats)]
    return {"size": f"{width}×{height}", "history": history, "step_s": statistics.median(seconds)}


def gram_precision(stylizer: Stylizer, pictures: dict[str, Image.Image], sizes: list[int], repeats: int) -> list[dict]:
    """Gram of real bf16 features against fp64: the error and time of a bf16 result and of ours (fp32)."""
    rows = []
    layers = {f"relu{i}_1" for i in range(1, 6)}
    for (picture, img), size in ((p, s) for p in pictures.items() for s in sizes):
        tensor = images.to_tensor(images.resize(img, images.fit_size(img.size, size)), stylizer.device)
        with torch.no_grad():
            feats = stylizer.net(tensor, layers)
        for layer in sorted(layers):
            f = feats[layer]
            x = f.permute(0, 2, 3, 1).reshape(f.shape[0], -1, f.shape[1])
            exact = gram(f.double())
            scale = exact.abs().max()
            bf16_out = torch.bmm(x.transpose(1, 2), x).double()
            ours = gram(f).double()
            row = {"image": picture, "size": size, "layer": layer, "shape": f"{f.shape[1]}×{f.shape[2]}×{f.shape[3]}",
                   "bf16_out_err": float((bf16_out - exact).abs().max() / scale),
                   "fp32_out_err": float((ours - exact).abs().max() / scale),
                   "bf16_out_ms": 1000 * statistics.median(timed(stylizer.device, lambda: torch.bmm(x.transpose(1, 2), x))
                                                           for _ in range(repeats)),
                   "fp32_out_ms": 1000 * statistics.median(timed(stylizer.device, lambda: gram(f)) for _ in range(repeats))}
            rows.append(row)
    return rows


def timed_run(stylizer: Stylizer, jobs: list[Job], judge: Stylizer, history: int | None = None) -> dict:
    """A whole run: its time, curve, guard resets, and the fp32 objective of each item's saved 8-bit image."""
    saved = stylizer.history
    stylizer.history = history or saved
    try:
        run = stylizer.run_batch(jobs, report_every=10**9)  # only the last frame reports
        started = time.perf_counter()
        for frame in run:
            pass
        elapsed = time.perf_counter() - started
    finally:
        stylizer.history = saved
    judged = [judge.evaluate(img, job.content, job.styles, job.settings)["total"] for img, job in zip(frame.images, jobs)]
    history_rows = frame.histories[0]
    return {"steps": frame.step, "total_s": elapsed, "loss_8bit": judged[0], "losses_8bit": judged,
            "resets": frame.resets, "curve": [(k, h["total"]) for k, h in history_rows],
            "worst_jump": worst_jump([h["total"] for _, h in history_rows])}


def worst_jump(losses: list[float], after: int = 0) -> float:
    """The largest ratio of a loss to the best one before it (counting steps from `after` on): how far one step
    landed above the best so far."""
    best, worst = math.inf, 1.0
    for k, loss in enumerate(losses):
        if best < math.inf and k >= after:
            worst = max(worst, loss / best)
        best = min(best, loss)
    return worst


def default_run(stylizer: Stylizer, content: Image.Image, style: Image.Image, settings: Settings) -> dict:
    """The app's default run: seconds to the first reported image (as the app streams) and to the end."""
    started = time.perf_counter()
    first = None
    last_report = [started]

    def every_half_second(step: int) -> bool:
        if time.perf_counter() - last_report[0] >= 0.5 or first is None:
            last_report[0] = time.perf_counter()
            return True
        return False

    for frame in stylizer.run(content, [style], settings, report_every=every_half_second):
        if first is None and frame.image is not None:
            first = time.perf_counter() - started
    frame.image.save(Path(tempfile.gettempdir()) / "benchmarks-default-run.png")
    return {"size": f"{frame.size[0]}×{frame.size[1]}", "steps": frame.total_steps, "steps_done": frame.step,
            "scales": settings.scales,
            "first_image_s": first, "total_s": time.perf_counter() - started, "final_loss": frame.losses["total"]}


def cold_start() -> dict:
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
            from stylize.engine.weights import load_hub
            started = time.perf_counter()
            load_hub()
            print(time.perf_counter() - started)
        """)
        env = {**os.environ, "HF_HOME": tmp, "HF_HUB_OFFLINE": "1"}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, cwd=ROOT)
        result["hub_cache_s"] = float(out.stdout.strip().splitlines()[-1])
    return result


def peak_memory_mb(device: torch.device) -> dict:
    peak = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        peak["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return peak


def activation_memory_mb(size: tuple[int, int], batch: int = 1, history: int = 20, bf16: bool = True) -> float:
    """Computed (not measured) memory of one run: VGG activations kept for backward to relu5_1, the L-BFGS
    history (2·m image-sized fp32 vectors) and the Gram matrices, in MB."""
    width, height = size
    elements, channels = 0, ((2, 64), (2, 128), (4, 256), (4, 512), (1, 512))
    for block, (convs, ch) in enumerate(channels):
        elements += convs * 2 * ch * (height >> block) * (width >> block)  # conv output and its ReLU
    act = elements * (2 if bf16 else 4)
    hist = 2 * history * 3 * width * height * 4
    return batch * (act + hist) / 2**20


def markdown(report: dict) -> str:
    lines = [f"Device: {report['device']} · torch {report['torch']} · {report['threads']} threads · "
             f"images: {report['images']} · `{report['command']}`", ""]
    if "iterations" in report:
        lines += ["| precision | size | floor (fwd+bwd) | engine step | ratio | optimizer's own step, "
                  f"m = {report['history_pairs']} (share) | Grams fwd+bwd (share) |", "|---|---|---|---|---|---|---|"]
        shares = {r["size"]: r for r in report.get("optimizer", []) if r["history"] == report["history_pairs"]}
        for row in report["iterations"]:
            opt = shares.get(row["size"])
            share = f"{opt['step_s'] * 1000:.1f} ms ({opt['step_s'] / row['step_s'] * 100:.1f} %)" if opt else "—"
            lines.append(f"| {row['precision']} | {row['size']} | {row['floor_s'] * 1000:.0f} ms | "
                         f"{row['step_s'] * 1000:.0f} ms | {row['ratio']:.2f}× | {share} | "
                         f"{row['gram_s'] * 1000:.1f} ms ({row['gram_s'] / row['step_s'] * 100:.1f} %) |")
    if "gram" in report:
        lines += ["", "Gram matrices of real bf16 features against fp64: max error relative to the largest entry, "
                  "and time.", "", "| image | size | layer | features | bf16 result | ours: fp32 result |",
                  "|---|---|---|---|---|---|"]
        for r in report["gram"]:
            lines.append(f"| {r['image']} | {r['size']} | {r['layer']} | {r['shape']} | {r['bf16_out_err'] * 100:.3f} % · "
                         f"{r['bf16_out_ms']:.1f} ms | {r['fp32_out_err'] * 100:.4f} % · {r['fp32_out_ms']:.1f} ms |")
    if "history" in report:
        rows = report["history"]
        lines += ["", f"History size (m pairs): quality per step measured, time per step = engine step − optimizer(100) "
                      f"+ optimizer(m), all from this run; equal time = {rows[0]['steps']} steps of the fastest.", "",
                  "| m | size | step | loss after all steps (8-bit) | steps in equal time | best loss by then |",
                  "|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['history']} | {r['size']} | {r['step_s'] * 1000:.0f} ms | {r['loss_8bit']:.4g} | "
                         f"{r['equal_time_steps']} | {r['equal_time_loss']:.4g} |")
    if "schedule" in report:
        lines += ["", "Coarse-to-fine schedule (levels √2 apart, equal steps per level). Time = the steps × this run's "
                      "median step time at each level's size; the first row of each size is the reference.", "",
                  "| size | schedule | steps | time | 8-bit loss | reaches the reference's loss at | guard resets | "
                  "worst jump |", "|---|---|---|---|---|---|---|---|"]
        for r in report["schedule"]:
            reached = "never" if r["time_to_single_loss_s"] is None else f"{r['time_to_single_loss_s']:.1f} s"
            lines.append(f"| {r['size']} | {r['name']} | {r['steps']} | {r['total_s']:.1f} s | {r['loss_8bit']:.4g} | "
                         f"{reached} | {r['resets'][0]} | {r['worst_jump']:.2f}× |")
    if "batch" in report:
        lines += ["", "Batch size (one VGG pass for B images):", "",
                  "| B | size | step | per image | vs B=1 |", "|---|---|---|---|---|"]
        for r in report["batch"]:
            lines.append(f"| {r['batch']} | {r['size']} | {r['step_s'] * 1000:.0f} ms | {r['per_image_s'] * 1000:.0f} ms | "
                         f"{r['speedup']:.2f}× |")
    if "models" in report:
        lines += ["", "Style models (one step, bf16 where native):", "", "| model | size | step | vs Gram |",
                  "|---|---|---|---|"]
        for r in report["models"]:
            lines.append(f"| {r['model']} | {r['size']} | {r['step_s'] * 1000:.0f} ms | {r['vs_gram']:.2f}× |")
    if any("peak_cuda_mb" in r for r in report.get("iterations", [])):
        lines += ["", "Peak GPU memory of a run (measured):", "", "| precision | size | peak |", "|---|---|---|"]
        lines += [f"| {r['precision']} | {r['size']} | {r['peak_cuda_mb']:.0f} MB |" for r in report["iterations"]]
    if "memory_table" in report:
        lines += ["", "Memory per image, computed from the activation sizes (not measured): VGG "
                  "activations to relu5_1 in bf16 plus the fp32 L-BFGS history "
                  f"(m = {report['memory_table'][0]['history']}).", "",
                  "| size | activations + history |", "|---|---|"]
        for r in report["memory_table"]:
            lines.append(f"| {r['size']} | {r['mb']:.0f} MB |")
    if "guard" in report:
        rows = report["guard"]
        lines += ["", f"Every preset at {rows[0]['size']} px × {rows[0]['steps']} steps (tuned settings): worst step "
                      f"(its loss over the best before it) {max(r['worst_jump'] for r in rows):.3f}×, guard resets "
                      f"{sum(r['resets'] for r in rows)} in all.", "",
                  "| preset | worst step | worst after step 50 | resets | best loss |", "|---|---|---|---|---|"]
        lines += [f"| {r['preset']} | {r['worst_jump']:.3f}× | {r['late_jump']:.3f}× | {r['resets']} | {r['final']:.4g} |"
                  for r in rows]
    if "precision_reason" in report:
        probe = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in report["probe_floors_s"].items())
        lines += ["", f"Precision chosen here: {report['precision_reason']} (start-up probe at 128×96: {probe})."]
    if "default_run" in report:
        e = report["default_run"]
        lines += ["", f"Default run ({e['size']}, {e['steps']} steps, {e['scales']} level(s), "
                      f"{report['default_precision']}): first image {e['first_image_s']:.1f} s, total {e['total_s']:.1f} s "
                      f"(estimated before the run: {report['default_estimate_s']:.1f} s)."]
    if "run_512x500" in report:
        e = report["run_512x500"]
        lines += [f"512 px × 500 steps, single scale: first image {e['first_image_s']:.1f} s, total {e['total_s']:.1f} s."]
    if "cold_start" in report:
        c = report["cold_start"]
        lines += ["", f"Cold start: embedded {c['embedded_s']:.2f} s, local file {c['file_s']:.2f} s, Hub cache "
                      f"{c['hub_cache_s']:.2f} s."]
    if "memory" in report:
        lines += ["", f"Peak RSS {report['memory']['peak_rss_mb']:.0f} MB" +
                  (f", peak CUDA {report['memory']['peak_cuda_mb']:.0f} MB" if "peak_cuda_mb" in report["memory"] else "")
                  + "."]
    return "\n".join(lines) + "\n"


def chart(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    rows = report.get("iterations", [])
    xs = range(len(rows))
    left.bar([x - 0.2 for x in xs], [r["floor_s"] * 1000 for r in rows], 0.4, label="floor: VGG fwd+bwd")
    left.bar([x + 0.2 for x in xs], [r["step_s"] * 1000 for r in rows], 0.4, label="engine step")
    for x, r in zip(xs, rows):
        left.text(x + 0.2, r["step_s"] * 1000, f"{r['ratio']:.2f}×", ha="center", va="bottom", fontsize=8)
    left.set_xticks(list(xs), [f"{r['precision']}\n{r['size']}" for r in rows], fontsize=8)
    left.set_ylabel("ms per step (median)")
    left.set_title(f"Engine step vs floor — {report['device']}", fontsize=9)
    left.legend(fontsize=8)
    for r in report.get("schedule", []):
        seconds, loss = zip(*r["curve_s"])
        right.plot(seconds, loss, label=f"{r['size']} px, {r['name']}, {r['steps']} steps (8-bit {r['loss_8bit']:.3g})")
    right.set_yscale("log")
    right.set_xlabel("seconds (steps × median step time at each level's size)")
    right.set_ylabel("total loss of each evaluated image")
    right.set_title("Single scale vs coarse-to-fine", fontsize=9)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke mode: tiny sizes, few repeats (for CI)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="sizes for floor vs step (default 256 512)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per median (default 7)")
    parser.add_argument("--guard-size", type=int, default=None,
                        help="size of the every-preset guard study (default 512 on a GPU, 256 on a CPU)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default="bench-results", help="folder for bench.json, bench.md and bench.png")
    args = parser.parse_args(argv)
    quick, only = args.quick, set(args.only)
    repeats = args.repeats or (3 if quick else 7)
    device = torch.device(args.device) if args.device else default_device()
    gpu = device.type == "cuda" and not quick
    sizes = args.sizes or ([64, 96] if quick else [256, 512] + ([1024] if gpu else []))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    content, style, source = reference_images()
    weights = load_embedded()
    auto = Stylizer(weights, device, precision="auto")  # what this machine is given, and why (engine/precision.py)
    native = auto.precision
    precisions = ["fp32", "bf16"] if device.type == "cpu" or native == "bf16" else ["fp32"]
    stylizers = {p: Stylizer(weights, device, precision=p) for p in precisions}
    engine, judge = stylizers[native], stylizers["fp32"]
    name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU: {cpu_name()}"
    report: dict = {"device": name, "torch": torch.__version__, "threads": torch.get_num_threads(), "images": source,
                    "default_precision": native, "precision_reason": auto.chosen.reason,
                    "probe_floors_s": dict(auto.chosen.floors), "history_pairs": engine.history, "command": "python -m benchmarks.bench " + " ".join(argv or sys.argv[1:])}

    def log(*parts) -> None:
        print(*parts, flush=True)

    # The defaults the app would choose here: the probe's time model against the run budget (budget.py).
    budget = Budget.for_engine(auto, device.type)
    base = defaults_for(device.type)
    defaults = budget.fit(base, RUN_BUDGET_S, base.size)
    report["default_estimate_s"] = budget.seconds(defaults)
    if "steps" in only:
        report["iterations"] = []
        for size in sizes:
            for precision, stylizer in stylizers.items():
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                row = {"precision": precision, **floor_and_step(stylizer, content, style, Settings(size=size), repeats)}
                if device.type == "cuda":  # measured peak of a run at this size (the CPU table is computed)
                    row["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
                report["iterations"].append(row)
                log(f"{precision} {row['size']}: floor {row['floor_s'] * 1000:.0f} ms, step {row['step_s'] * 1000:.0f} ms, "
                    f"ratio {row['ratio']:.2f}")
    if "optimizer" in only:
        report["optimizer"] = [optimizer_share(engine, content, size, history, repeats)
                               for size in sizes for history in ((20, 100) if not quick else (100,))]
        log("optimizer:", [(r["size"], r["history"], round(r["step_s"] * 1000, 1)) for r in report["optimizer"]])
    if "gram" in only and native == "bf16":
        report["gram"] = gram_precision(engine, {"painting": style, "photo": content}, sizes, repeats)
        log("gram:", [(r["size"], r["layer"], f"{r['bf16_out_err']:.2e}", f"{r['fp32_out_err']:.2e}") for r in report["gram"]])
    if "history" in only:
        # Quality per step is measured (fixed step counts, immune to machine noise); time per step is the engine
        # step with history 100 minus the optimizer's measured cost at 100 plus its cost at h, all from this run.
        size, steps = (64, 10) if quick else (256, 200)
        width, height = images.fit_size(content.size, size)
        optimizer_cost = {h: optimizer_share(engine, content, size, h, repeats)["step_s"] for h in (10, 20, 50, 100)}
        base = floor_and_step(engine, content, style, Settings(size=size), repeats)["step_s"] - optimizer_cost[100]
        report["history"] = []
        for history in (10, 20, 50, 100):
            row = timed_run(engine, [Job(content, [style], Settings(size=size, steps=steps))], judge, history=history)
            row.update(history=history, size=f"{width}×{height}", step_s=base + optimizer_cost[history])
            report["history"].append(row)
        budget = steps * min(r["step_s"] for r in report["history"])  # the fastest history's time for all steps
        for row in report["history"]:
            reached = min(steps, int(budget / row["step_s"]))
            row["equal_time_steps"] = reached
            row["equal_time_loss"] = min(loss for k, loss in row["curve"][:reached])
            log(f"history {row['history']}: {row['step_s'] * 1000:.0f} ms/step, loss after {steps} steps "
                f"{row['curve'][-1][1]:.4g} (8-bit {row['loss_8bit']:.4g}); in {budget:.0f} s: {reached} steps, "
                f"loss {row['equal_time_loss']:.4g}")
    if "schedule" in only:
        # Quality per step is measured; time is modeled from per-size step times measured here (quiet medians),
        # so the comparison does not depend on machine noise during the long runs.
        report["schedule"] = []
        plans = [(96, [("single", 1, 20), ("3 levels", 3, 20)])] if quick else [
            (256, [("single", 1, 200), ("2 levels", 2, 200)]),
            (512, [("single", 1, 300), ("3 levels", 3, 90), ("3 levels", 3, 150), ("3 levels", 3, 300)])] + ([
            (1024, [("single", 1, 500), ("3 levels", 3, 150), ("3 levels", 3, 250), ("3 levels", 3, 500)])]
            if gpu else [])  # 1024 px on a CPU: too slow for one run of the bench
        step_cost: dict[tuple[int, int], float] = {}
        for size, runs in plans:
            target = None
            for label, scales, steps in runs:
                levels, level_steps = schedule(images.fit_size(content.size, size), scales, steps)
                for level in levels:
                    if level not in step_cost:
                        step_cost[level] = floor_and_step(engine, content.resize(level), style,
                                                          Settings(size=max(64, max(level))), repeats)["step_s"]
                seconds = [step_cost[level] for level, n in zip(levels, level_steps) for _ in range(n)]
                row = timed_run(engine, [Job(content, [style], Settings(size=size, steps=steps, scales=scales))], judge)
                row.update(size=size, name=label, total_s=sum(seconds),
                           curve_s=[(sum(seconds[:k]), loss) for k, loss in row["curve"]])
                final_level = steps - level_steps[-1]
                row["worst_jump"] = worst_jump([loss for _, loss in row["curve"][final_level:]])  # within the level
                if target is None:
                    target = row["loss_8bit"]  # the single-scale run's saved image
                reached = next((t for (t, loss), k in zip(row["curve_s"], range(steps)) if k >= final_level
                                and loss <= target), None)
                row["time_to_single_loss_s"] = reached
                report["schedule"].append(row)
                log(f"schedule {size} {label} {steps} steps: {row['total_s']:.1f} s (modeled), 8-bit {row['loss_8bit']:.4g}, "
                    f"reaches single's {target:.4g} at {reached}, resets {row['resets']}, worst jump {row['worst_jump']:.2f}")
        report["memory_table"] = [{"size": f"{w}×{h}", "mb": activation_memory_mb((w, h), history=engine.history),
                                   "history": engine.history}
                                  for w, h in ((512, 384), (1024, 768), (2048, 1536))]
    if "batch" in only:
        report["batch"] = []
        size = 64 if quick else 256
        base = None
        for batch in (1, 2, 4):
            jobs = [Job(content, [style], Settings(size=size, steps=repeats + 2, seed=k)) for k in range(batch)]
            run = engine.run_batch(jobs, report_every=10**9)
            next(run), next(run)
            step = statistics.median(timed(device, lambda: next(run)) for _ in range(repeats))
            run.close()
            base = base or step
            report["batch"].append({"batch": batch, "size": size, "step_s": step, "per_image_s": step / batch,
                                    "speedup": base * batch / step})
            log(f"batch {batch}: {step * 1000:.0f} ms per step")
    if "models" in only:
        report["models"] = []
        for size in sizes:
            width, height = images.fit_size(content.size, size)
            left = Image.new("L", (width, height), 0)
            left.paste(255, (0, 0, width // 2, height))
            right = Image.eval(left, lambda v: 255 - v)
            variants = {"gram": (Settings(size=size), None, [style]),
                        "gram, 2 masked regions": (Settings(size=size), [left, right], [style, style]),
                        "mrf (relu3_1, relu4_1)": (Settings(size=size, style_model="mrf"), None, [style])}
            gram_step = None
            for model, (settings, masks, styles) in variants.items():
                row = floor_and_step(engine, content, style, settings, repeats, masks=masks, styles=styles)
                gram_step = gram_step or row["step_s"]
                report["models"].append({"model": model, "size": row["size"], "step_s": row["step_s"],
                                         "vs_gram": row["step_s"] / gram_step})
                log(f"{model} {row['size']}: {row['step_s'] * 1000:.0f} ms")
    if "guard" in only:
        # Every preset at its tuned settings, as one batch per shared shape of work: the worst step seen (loss over
        # the best before it) and the guard's resets. 512 px × 300 steps on a GPU; on a CPU 256 px × 300, since 512 px
        # (`--guard-size 512`) takes long there.
        from stylize.presets import PresetImages, load_manifest

        presets = load_manifest()
        paths = PresetImages(presets)
        size = args.guard_size or (64 if quick else (512 if device.type == "cuda" else 256))
        steps = 10 if quick else 300
        groups: dict[tuple, list[tuple[str, Job]]] = {}
        for pid, preset in presets.items():
            job = Job(content, [images.load_image(paths.path(pid), 1024)], preset.apply(Settings(size=size, steps=steps)))
            groups.setdefault((job.settings.pooling, job.settings.preserve_color), []).append((pid, job))
        report["guard"] = []
        for group in groups.values():
            for start in range(0, len(group), 4):
                batch = group[start:start + 4]
                final = list(engine.run_batch([job for _, job in batch], report_every=10**9))[-1]
                for (pid, _), history, resets in zip(batch, final.histories, final.resets):
                    losses = [h["total"] for _, h in history]
                    report["guard"].append({"preset": pid, "size": size, "steps": steps, "resets": resets,
                                            "worst_jump": worst_jump(losses), "late_jump": worst_jump(losses, 50),
                                            "final": min(losses)})
        log("guard:", [(r["preset"], round(r["worst_jump"], 3), round(r["late_jump"], 3), r["resets"])
                       for r in report["guard"]])
    if "default" in only:
        settings = defaults.replace(size=64, steps=5) if quick else defaults
        report["default_run"] = default_run(engine, content, style, settings)
        log("default run:", {k: round(v, 3) if isinstance(v, float) else v for k, v in report["default_run"].items()})
        if gpu:  # the figure the README quotes for a GPU: 512 px × 500 steps, single scale
            report["run_512x500"] = default_run(engine, content, style, defaults.replace(size=512, steps=500, scales=1))
            log("512 px × 500 steps:", report["run_512x500"])
    if "cold" in only:
        report["cold_start"] = cold_start()
    report["memory"] = peak_memory_mb(device)
    (out / "bench.json").write_text(json.dumps(report, indent=1))
    (out / "bench.md").write_text(markdown(report))
    chart(report, out / "bench.png")
    print(markdown(report))
    print(f"wrote {out / 'bench.json'}, {out / 'bench.md'}, {out / 'bench.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
