"""The one Studio of this process, loaded when the app is imported (ZeroGPU needs the weights loaded on the
importing thread, before any worker process is forked)."""

from __future__ import annotations

from stylize import StylizeError
from stylize.studio import Studio

try:
    studio = Studio()
except StylizeError as exc:  # a bad setting in the environment ($STYLIZE_PRECISION): one line, no traceback
    raise SystemExit(f"stylize: {exc}") from None
