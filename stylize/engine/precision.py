"""Which precision is fast on this device, measured, not assumed; and what the device is called.

Whether bf16 pays on a CPU depends on the chip: Intel's AMX computes bf16 convolutions about 3× faster than fp32,
AMD Zen 4 about 2×, and an AVX-512 Xeon without AMX *slower* than fp32 — and
`torch.ops.mkldnn._is_mkldnn_bf16_supported()` says True on all of them. So the precision comes from a capability
torch reports (AMX) or from a short timed probe (a bare VGG forward + backward in each precision), once per process.
The same probe's time starts the cost model (stylize.cost.timing).

And how this process's memory is kept (`keep_freed_memory`, below): a machine setting like the precision.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch

from stylize.errors import StylizeError
from stylize.params import Settings

PRECISIONS = ("auto", "fp32", "bf16")
PRECISION_ENV = "STYLIZE_PRECISION"
# bf16 is taken only when the probe finds it clearly faster: within this margin fp32's exact gradients win.
BF16_MARGIN = 1.2
PROBE_SIZE = (128, 96)  # small enough for well under a second on a CPU, large enough to be compute-bound there


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def requested_precision(value: str | None = None) -> str:
    """`value`, else $STYLIZE_PRECISION, else 'auto'; any other value is refused with the choices named."""
    chosen = (value or os.environ.get(PRECISION_ENV) or "auto").strip().lower()
    if chosen not in PRECISIONS:
        source = "precision" if value else PRECISION_ENV
        raise StylizeError(f"{source} must be one of {', '.join(PRECISIONS)} (got {chosen!r})")
    return chosen


@dataclass(frozen=True)
class Precision:
    """The convolutions' precision on this device, why, and the probe's timings (seconds at PROBE_SIZE)."""

    name: str
    reason: str
    floors: Mapping[str, float] = field(default_factory=dict)

    @property
    def dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.name == "bf16" else torch.float32


def gpu_precision(capability: tuple[int, int]) -> Precision:
    """bf16 on GPUs that compute it natively (compute capability ≥ 8.0: Ampere, Ada, Hopper, …), else fp32.

    `torch.cuda.is_bf16_supported()` also says True on a T4 (7.5), where bf16 is emulated and slower than fp32.
    """
    cc = f"{capability[0]}.{capability[1]}"
    if capability[0] >= 8:
        return Precision("bf16", f"bf16 — computed natively on this GPU (compute capability {cc})")
    return Precision("fp32", f"fp32 — this GPU (compute capability {cc}) has no native bf16")


def cpu_precision(floors: Mapping[str, float], amx: bool) -> Precision:
    """The rule for a CPU, from the capability query and the probe's timings (either may be missing)."""
    if amx:
        return Precision("bf16", "bf16 — this CPU has AMX (bf16 matrix units)", floors)
    fp32, bf16 = floors.get("fp32"), floors.get("bf16")
    if fp32 is None or bf16 is None:
        return Precision("fp32", "fp32 — bf16 was not measured on this CPU", floors)
    if bf16 * BF16_MARGIN <= fp32:
        return Precision("bf16", f"bf16 — measured {fp32 / bf16:.1f}× faster than fp32 on this CPU", floors)
    if bf16 > fp32:
        return Precision("fp32", f"fp32 — bf16 measured {bf16 / fp32:.1f}× slower on this CPU", floors)
    return Precision("fp32", f"fp32 — bf16 measured only {fp32 / bf16:.2f}× faster on this CPU", floors)


def cpu_capabilities() -> dict:
    capabilities = getattr(torch.cpu, "get_capabilities", None)  # public since torch 2.14
    return capabilities() if capabilities else {}


def has_amx(capabilities: Mapping | None = None) -> bool:
    return bool((cpu_capabilities() if capabilities is None else capabilities).get("amx_bf16"))


def lacks_bf16(capabilities: Mapping | None = None) -> bool:
    """An x86 CPU with neither AVX512-BF16 nor AMX: oneDNN emulates bf16 there, always slower than fp32."""
    caps = cpu_capabilities() if capabilities is None else capabilities
    return caps.get("architecture") == "x86_64" and not (caps.get("avx512_bf16") or caps.get("amx_bf16"))


def pass_timer(net: torch.nn.Module, device: torch.device, size: tuple[int, int] = PROBE_SIZE
               ) -> Callable[[], float]:
    """A function that times one bare forward + backward pass through the whole network (to relu5_1 where the
    weights go that deep) on a fixed random image of `size`, in seconds."""
    width, height = size
    x = torch.rand(1, 3, height, width, device=device, requires_grad=True)
    last = getattr(net, "deepest_available", "relu5_1")
    pooling = Settings.pooling  # the default run's

    def once() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        net(x, {last}, pooling)[last].float().sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - started

    return once


def time_floor(net: torch.nn.Module, device: torch.device, size: tuple[int, int] = PROBE_SIZE,
               repeats: int = 2) -> float:
    """The fastest of `repeats` bare passes (`pass_timer`) after one untimed warm-up, in seconds."""
    once = pass_timer(net, device, size)
    once()
    return min(once() for _ in range(repeats))


def choose_precision(device: torch.device, make_net: Callable[[torch.dtype], torch.nn.Module],
                     requested: str = "auto") -> Precision:
    """The precision for `device`: as requested, or ('auto') the faster one here. On a GPU the compute
    capability decides (nothing is run: ZeroGPU's server process has no GPU to run on); on a CPU the probe
    times what it needs (on an AMX CPU only bf16, for the time model)."""
    if requested != "auto":
        chosen = Precision(requested, f"{requested} — set by {PRECISION_ENV} or --precision")
        if device.type == "cuda":
            return chosen
        return Precision(requested, chosen.reason, {requested: time_floor(make_net(chosen.dtype), device)})
    if device.type == "cuda":
        return gpu_precision(torch.cuda.get_device_capability(device))
    caps = cpu_capabilities()
    if lacks_bf16(caps):
        floors = {"fp32": time_floor(make_net(torch.float32), device)}
        return Precision("fp32", "fp32 — this CPU has no bf16 instructions (neither AVX512-BF16 nor AMX)", floors)
    if has_amx(caps):
        return cpu_precision({"bf16": time_floor(make_net(torch.bfloat16), device)}, amx=True)
    return cpu_precision(probe_both(make_net, device), amx=False)


def probe_both(make_net: Callable[[torch.dtype], torch.nn.Module], device: torch.device,
               rounds: int = 2) -> dict[str, float]:
    """Each precision's fastest pass, timed in alternation after a warm-up of each, so that a neighbour's load
    hits both alike."""
    timers = {"fp32": pass_timer(make_net(torch.float32), device), "bf16": pass_timer(make_net(torch.bfloat16), device)}
    for once in timers.values():
        once()
    floors = {name: math.inf for name in timers}
    for _ in range(rounds):
        for name, once in timers.items():
            floors[name] = min(floors[name], once())
        if floors["bf16"] > 2 * floors["fp32"]:  # settled: a slow bf16 costs seconds to time fully
            break
    return floors


_chosen: dict[tuple, Precision] = {}
_chosen_lock = threading.Lock()


def precision_for(device: torch.device, make_net: Callable[[torch.dtype], torch.nn.Module],
                  requested: str = "auto") -> Precision:
    """`choose_precision`, once per process for each device and request (every engine here shares the answer)."""
    key = (str(device), requested)
    with _chosen_lock:
        if key not in _chosen:
            _chosen[key] = choose_precision(device, make_net, requested)
        return _chosen[key]


@functools.cache
def cpu_name() -> str:
    """The processor's model name, for the page's hardware line and every reported figure."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


# ---- memory: keep freed memory in the process (glibc) ----------------------------------------------
#
# Keep freed memory in the process, so the large tensors of every step do not page-fault afresh (glibc only).
#
# A step at 512 px allocates and frees ~70 MB of feature maps and gradients. glibc hands blocks that large back
# to the kernel (mmap, or trimming the heap's top) and the next step faults them in again, page by page: 18,400
# minor faults per step on the main thread (the command line, the bench), 13–15 % of a step at 512 px (README,
# Performance).
# Gradio's worker threads happened not to fault (their arenas keep memory), but one arena for all threads, no
# mmap and no trimming make both the same.
#
# The cost is that resident memory stays at its peak after a run (the way PyTorch's CUDA allocator keeps GPU
# memory): ~1.5 GB after a 512 px run. A program that embeds stylize and would rather not have its malloc tuned
# sets STYLIZE_KEEP_FREED_MEMORY=0.
# mallopt(3) parameters (glibc's malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
NEVER_TRIM = 2**31 - 1  # the largest int mallopt takes: up to 2 GiB free at the heap's top is kept


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to reuse freed memory instead of returning it; True where it was told.

    Must run before other threads allocate (an arena, once a thread has one, is kept): `stylize.engine`
    calls it on import."""
    if not sys.platform.startswith("linux") or os.environ.get("STYLIZE_KEEP_FREED_MEMORY") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1
               for param, value in ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER_TRIM)))
