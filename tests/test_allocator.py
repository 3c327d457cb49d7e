"""The process keeps freed memory: a step's large tensors do not page-fault afresh every step."""

import resource
import sys
import threading

import pytest
import torch

import stylize.engine  # noqa: F401  (importing the engine sets the allocator up)
from stylize.engine.precision import keep_freed_memory

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")


def faults_while(work) -> int:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    work()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def step_like() -> None:
    """What a step does to memory at 512 px: feature-map-sized tensors (25–50 MB) made, written and freed."""
    for _ in range(3):
        a = torch.empty(1, 64, 384, 512, dtype=torch.bfloat16).fill_(1)
        b = torch.empty(1, 64, 384, 512).fill_(1)  # fp32: 50 MB, over glibc's largest mmap threshold
        del a, b


@pytest.mark.parametrize("in_a_worker_thread", [False, True])
def test_repeated_large_tensors_stop_faulting_pages(in_a_worker_thread):
    assert keep_freed_memory()  # glibc took every setting
    counts: list[int] = []

    def measure() -> None:
        step_like()  # the first time, the memory is new
        counts.extend(faults_while(step_like) for _ in range(3))

    if in_a_worker_thread:  # as in the app: Gradio runs the engine in worker threads
        thread = threading.Thread(target=measure)
        thread.start()
        thread.join()
    else:
        measure()
    # Without the settings each repetition faults ~18,000 pages (≈ 75 MB) back in; with them, none.
    assert min(counts) < 500, counts


def test_it_can_be_left_alone(monkeypatch):
    monkeypatch.setenv("STYLIZE_KEEP_FREED_MEMORY", "0")
    assert not keep_freed_memory()
