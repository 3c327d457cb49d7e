"""``python -m benchmarks.gpu``: one command that checks a GPU against what stylize assumes about it.

Measures, on a CUDA device: 512 px × 500 steps end to end (against the classic tools' published times), the engine
step against its floor (a bare VGG-19 forward + backward to the deepest layer, same size) in fp32 and bf16, memory per
pixel (`torch.cuda.max_memory_allocated`) against the planner's constants (`stylize.cost.budget`), the largest size that
fits, the batch plan of a six-painting Compare at 1,024 px, and the ZeroGPU duration asked against the time taken.
Writes gpu.json and gpu.md to `--out`. `--device cpu --quick` runs every section at tiny sizes (the tests' smoke
run); on a CPU the memory figures are not applicable (nothing is planned from a CPU's memory) and are left empty.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from PIL import Image

from benchmarks.bench import default_run, floor_and_step, peak_memory_mb, reference_images, sync
from stylize import images
from stylize.cost.budget import GPU_RESERVE_BYTES, SIZE_STEP, Budget, ZeroGpu, gpu_free_bytes, item_memory, plan_batches
from stylize.cost.timing import StepCost
from stylize.engine.loop import Job, Stylizer
from stylize.engine.precision import cpu_name
from stylize.engine.weights import load_embedded
from stylize.errors import StylizeError
from stylize.params import Settings, defaults_for

# Published times of 512 px × 500 iterations (README, Performance): the classic tools on one GPU each.
ANCHORS = {"jcjohnson/neural-style, Pascal Titan X, cuDNN": 30.0, "neural-style-pt, GTX 1080, cuDNN": 23.0}
COMPARE_PAINTINGS = 6
COMPARE_SIZE = 1024
# GPUs a Space may get, by the memory the planner sees (GB): the Compare plan is computed for each where no GPU is.
CARDS_GB = {"T4": 15, "L4": 22, "A10G": 22, "A100 40 GB": 39, "ZeroGPU RTX PRO 6000, large (half)": 47,
            "H100": 79, "ZeroGPU H200 slice": 69}
MODELS = {"gram": Settings(), "mrf": Settings(style_model="mrf")}


def planned_bytes(settings: Settings, bf16: bool, pixels: int) -> float:
    """What the planner (`budget.item_memory`) says one item of `pixels` output pixels needs."""
    per_pixel, fixed = item_memory(settings, bf16)
    return per_pixel * pixels + fixed


def measured_bytes(stylizer: Stylizer, content: Image.Image, style: Image.Image, settings: Settings) -> float:
    """Peak GPU memory a short run adds to what was allocated before it (its targets, activations, history)."""
    torch.cuda.empty_cache()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    for _ in stylizer.run(content, [style], settings.replace(steps=3, scales=1), report_every=10**9):
        pass
    sync(stylizer.device)
    return torch.cuda.max_memory_allocated() - before


def memory_rows(stylizers: dict[str, Stylizer], content: Image.Image, style: Image.Image, sizes: list[int],
                cuda: bool) -> list[dict]:
    """Per model and precision: the planner's bytes per pixel and fixed bytes; on a GPU, the measured ones (the
    slope and intercept of the peak between two sizes) and measured / planned at the larger size."""
    rows = []
    for (model, base), (precision, stylizer) in ((m, p) for m in MODELS.items() for p in stylizers.items()):
        bf16 = precision == "bf16"
        per_pixel, fixed = item_memory(base, bf16)
        row = {"model": model, "precision": precision, "planned_bytes_per_pixel": per_pixel,
               "planned_fixed_bytes": fixed, "measured_bytes_per_pixel": None, "measured_fixed_bytes": None,
               "measured_over_planned": None}
        if cuda:
            pixels, peaks = [], []
            for size in sizes:
                width, height = images.fit_size(content.size, size)
                pixels.append(width * height)
                peaks.append(measured_bytes(stylizer, content, style, base.replace(size=size)))
            slope = (peaks[1] - peaks[0]) / (pixels[1] - pixels[0])
            row.update(measured_bytes_per_pixel=slope, measured_fixed_bytes=peaks[0] - slope * pixels[0],
                       measured_over_planned=peaks[1] / planned_bytes(base, bf16, pixels[1]),
                       sizes=[f"{p} px" for p in pixels])
        rows.append(row)
    return rows


def fits(stylizer: Stylizer, content: Image.Image, style: Image.Image, size: int) -> bool:
    """Whether two steps at `size` run without running out of memory (the memory is handed back either way)."""
    try:
        for _ in stylizer.run(content, [style], Settings(size=size, steps=2, scales=1), report_every=10**9):
            pass
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        torch.cuda.empty_cache()


def largest_size(stylizer: Stylizer, content: Image.Image, style: Image.Image, step: int = 256,
                 tries: int = 12) -> dict:
    """The planner's largest size for one image (a multiple of 32 that `plan_batches` accepts in the free memory
    now) and the largest tried that ran, stepping by `step` px from the planned one."""
    free = gpu_free_bytes(stylizer.device)
    per_pixel, _ = item_memory(None, stylizer.precision == "bf16")
    aspect = content.size
    planned = SIZE_STEP
    while True:
        width, height = images.fit_size(aspect, planned + SIZE_STEP)
        try:
            plan_batches([width * height], free, per_pixel, max_items=1)
        except StylizeError:
            break
        planned += SIZE_STEP
    ran, size = None, planned
    direction = 1 if fits(stylizer, content, style, planned) else -1
    if direction > 0:
        ran = planned
    for _ in range(tries):
        size += direction * step
        if size < SIZE_STEP:
            break
        if fits(stylizer, content, style, size):
            ran = size
            if direction < 0:
                break
        elif direction > 0:
            break
    return {"precision": stylizer.precision, "free_gb": free / 2**30, "planned_px": planned, "ran_px": ran,
            "step_px": step, "ran_over_planned": ran / planned if ran else None}


def compare_plan(stylizer: Stylizer | None, content: Image.Image, bf16: bool, cuda: bool, steps: int) -> dict:
    """Six paintings at 1,024 px as Compare plans them: the batches for the free memory now (on a GPU, then run
    for `steps` steps, timed, with their peak memory) and, computed, for each card of CARDS_GB."""
    width, height = images.fit_size(content.size, COMPARE_SIZE)
    pixels = [width * height] * COMPARE_PAINTINGS
    per_pixel, _ = item_memory(None, bf16)

    def plan(free: float) -> list[list[int]] | str:
        try:
            return plan_batches(pixels, free, per_pixel, max_items=COMPARE_PAINTINGS)
        except StylizeError as exc:
            return str(exc)

    result: dict = {"size": f"{width}×{height}", "paintings": COMPARE_PAINTINGS, "precision": "bf16" if bf16 else "fp32",
                    "per_image_gb": per_pixel * pixels[0] / 2**30, "reserve_gb": GPU_RESERVE_BYTES / 2**30,
                    "computed": {card: plan(gb * 2**30) for card, gb in CARDS_GB.items()}}
    if cuda and stylizer is not None:
        from stylize.presets import PresetImages, load_manifest

        presets = load_manifest()
        paths = PresetImages(presets)
        chosen = list(presets)[:COMPARE_PAINTINGS]
        free = gpu_free_bytes(stylizer.device)
        batches = plan(free)
        result.update(free_gb=free / 2**30, batches=batches, steps=steps, runs=[])
        if isinstance(batches, list):
            for batch in batches:
                jobs = [Job(content, [images.load_image(paths.path(chosen[k]), 1024)],
                            Settings(size=COMPARE_SIZE, steps=steps, scales=1)) for k in batch]
                torch.cuda.reset_peak_memory_stats()
                started = time.perf_counter()
                try:
                    for _ in stylizer.run_batch(jobs, report_every=10**9):
                        pass
                    outcome = "ran"
                except torch.OutOfMemoryError:
                    outcome = "out of memory"
                    torch.cuda.empty_cache()
                result["runs"].append({"items": len(batch), "outcome": outcome, "seconds": time.perf_counter() - started,
                                       "peak_gb": torch.cuda.max_memory_allocated() / 2**30})
    return result


def zerogpu_rows(run: dict, settings: Settings, compare: dict | None) -> list[dict]:
    """The duration a ZeroGPU task would ask for (from the computed prior ZeroGPU starts with, as its server has no
    GPU to probe) against the time the same work took here; charged on an H200 (factor 1) and an RTX PRO 6000 (1.5)."""
    budget = Budget("cuda", StepCost.from_floor(None), ZeroGpu())
    rows = [{"work": f"one run, {run['size']}, {settings.steps} steps", "estimate_s": budget.seconds(settings),
             "asked_s": budget.request(settings), "taken_s": run["total_s"]}]
    if compare and compare.get("runs"):
        cell = Settings(size=COMPARE_SIZE, steps=compare["steps"], scales=1)
        asked = ZeroGpu.request(sum(budget.seconds(cell) for _ in range(compare["paintings"])))
        rows.append({"work": f"Compare, {compare['paintings']} × {compare['size']}, {compare['steps']} steps",
                     "estimate_s": compare["paintings"] * budget.seconds(cell), "asked_s": asked,
                     "taken_s": sum(r["seconds"] for r in compare["runs"])})
    for row in rows:
        row.update(asked_over_taken=row["asked_s"] / row["taken_s"], charged_h200_s=ZeroGpu(1.0).charged(row["asked_s"]),
                   charged_rtx_pro_6000_s=ZeroGpu(1.5).charged(row["asked_s"]))
    return rows


def markdown(report: dict) -> str:
    e2e = report["end_to_end"]
    lines = [f"Device: {report['device']} · torch {report['torch']} · `{report['command']}`", "",
             f"**End to end**: {e2e['size']} × {e2e['steps_done']} steps (asked {e2e['steps']}) in "
             f"{e2e['total_s']:.1f} s, first image after {e2e['first_image_s']:.2f} s"
             + ("" if report["quick"] else "; published 512 px × 500: "
                + ", ".join(f"{name} {s:.0f} s ({s / e2e['total_s']:.2f}× ours)" for name, s in ANCHORS.items())), "",
             "| precision | size | floor (fwd+bwd) | engine step | step / floor |", "|---|---|---|---|---|"]
    for row in report["steps"]:
        lines.append(f"| {row['precision']} | {row['size']} | {row['floor_s'] * 1000:.1f} ms | "
                     f"{row['step_s'] * 1000:.1f} ms | {row['ratio']:.2f}× |")
    mem = report["memory"]
    lines += ["", f"**Memory per pixel** ({mem['measured_with']}):", "",
              "| model | precision | planned B/px | planned fixed | measured B/px | measured fixed | measured / planned |",
              "|---|---|---|---|---|---|---|"]

    def num(value, scale=1.0, fmt="{:.0f}") -> str:
        return "n/a" if value is None else fmt.format(value / scale)

    for r in mem["rows"]:
        lines.append(f"| {r['model']} | {r['precision']} | {r['planned_bytes_per_pixel']:.0f} | "
                     f"{r['planned_fixed_bytes'] / 2**20:.0f} MiB | {num(r['measured_bytes_per_pixel'])} | "
                     f"{num(r['measured_fixed_bytes'], 2**20, '{:.0f} MiB')} | {num(r['measured_over_planned'], 1, '{:.2f}')} |")
    big = report["largest"]
    lines += ["", "**Largest size that fits**: " + (big if isinstance(big, str) else
              f"planned {big['planned_px']} px, ran {big['ran_px']} px ({big['precision']}, {big['free_gb']:.1f} GB free)")]
    cmp_ = report["compare_1024"]
    lines += ["", f"**Compare, {cmp_['paintings']} paintings at {cmp_['size']}** ({cmp_['precision']}, "
              f"{cmp_['per_image_gb']:.2f} GB each, {cmp_['reserve_gb']:.0f} GB reserve): "
              + ("; ".join(f"{card} {plan}" for card, plan in cmp_["computed"].items()))]
    if "batches" in cmp_:
        lines.append(f"Here ({cmp_['free_gb']:.1f} GB free): {cmp_['batches']}; " + ", ".join(
            f"{r['items']} items {r['outcome']} in {r['seconds']:.1f} s, peak {r['peak_gb']:.1f} GB" for r in cmp_["runs"]))
    lines += ["", "| ZeroGPU work | estimate | asked | taken here | asked / taken | charged H200 / RTX PRO 6000 |",
              "|---|---|---|---|---|---|"]
    for r in report["zerogpu"]:
        lines.append(f"| {r['work']} | {r['estimate_s']:.1f} s | {r['asked_s']} s | {r['taken_s']:.1f} s | "
                     f"{r['asked_over_taken']:.1f}× | {r['charged_h200_s']:.0f} / {r['charged_rtx_pro_6000_s']:.0f} s |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps (the tests' smoke run)")
    parser.add_argument("--size", type=int, default=None, help="end-to-end size (default 512; quick 64)")
    parser.add_argument("--steps", type=int, default=None, help="end-to-end steps (default 500; quick 5)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per median (default 7; quick 3)")
    parser.add_argument("--out", default="bench-results", help="folder for gpu.json and gpu.md")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    if cuda and not torch.cuda.is_available():
        parser.error("no CUDA device here: run on a GPU, or pass --device cpu --quick for the smoke run")
    quick = args.quick
    size, steps = args.size or (64 if quick else 512), args.steps or (5 if quick else 500)
    repeats = args.repeats or (3 if quick else 7)
    memory_sizes = [64, 96] if quick else [512, 1024]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    content, style, source = reference_images()
    weights = load_embedded()
    stylizers: dict[str, Stylizer] = {}
    for precision in ("fp32", "bf16"):
        try:
            stylizers[precision] = Stylizer(weights, device, precision=precision)
        except StylizeError as exc:  # bf16 on a GPU without it (before compute capability 8.0)
            print(f"{precision}: {exc}", flush=True)
    # The precision the app would pick here (machine.py); on a CPU the smoke run keeps fp32 and skips the probe.
    native = Stylizer(weights, device, precision="auto").precision if cuda else "fp32"
    engine = stylizers[native]
    if cuda:
        torch.cuda.empty_cache()
    report: dict = {"device": torch.cuda.get_device_name(device) if cuda else f"CPU: {cpu_name()}",
                    "torch": torch.__version__, "images": source, "quick": quick, "precision": native,
                    "command": "python -m benchmarks.gpu " + " ".join(sys.argv[1:] if argv is None else argv)}

    settings = defaults_for(device.type).replace(size=size, steps=steps, scales=1)
    report["end_to_end"] = default_run(engine, content, style, settings)
    report["end_to_end"]["anchors_s"] = ANCHORS if size == 512 and steps == 500 else {}
    print("end to end:", report["end_to_end"], flush=True)
    report["steps"] = [{"precision": p, **floor_and_step(s, content, style, Settings(size=size), repeats)}
                       for p, s in stylizers.items()]
    print("steps:", [(r["precision"], round(r["ratio"], 2)) for r in report["steps"]], flush=True)
    report["memory"] = {"measured_with": "torch.cuda.max_memory_allocated, slope between "
                                         f"{memory_sizes[0]} and {memory_sizes[1]} px" if cuda else
                        "not applicable on a CPU (no memory is planned there); the process's peak RSS is given",
                        "rows": memory_rows(stylizers, content, style, memory_sizes, cuda),
                        **peak_memory_mb(device)}
    report["largest"] = (largest_size(engine, content, style, step=32 if quick else 256) if cuda
                         else "not applicable on a CPU")
    report["compare_1024"] = compare_plan(engine, content, native == "bf16", cuda and not quick, steps=10)
    report["zerogpu"] = zerogpu_rows(report["end_to_end"], settings, report["compare_1024"])
    text = markdown(report)
    (out / "gpu.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "gpu.md").write_text(text)
    print(text)
    print(f"wrote {out / 'gpu.json'} and {out / 'gpu.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
