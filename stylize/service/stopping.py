"""Stop, for the visitor who started the run and nobody else.

Each run has its own unguessable token (`new_token`), kept by the page that started it (server-side, in the
session's state); Stop names that token. The flag is a file, because on ZeroGPU the run works in a forked child
process that never sees the parent's memory: `<token hash>.stop` once Stop was pressed, which the run checks with
one stat() per step. Stop may come before the run starts (while it waits in the queue): the run then ends before
it takes any GPU.
"""

from __future__ import annotations

import hashlib
import secrets

from . import storage


def new_token() -> str:
    """A run's stop token: 128 random bits."""
    return secrets.token_urlsafe(16)


class StopFlag:
    """One run's Stop, readable from any process. Without a token (an API call) nobody else can stop it: its
    client cancels the request instead."""

    def __init__(self, token: str | None = None) -> None:
        key = hashlib.blake2b((token or new_token()).encode(), digest_size=16).hexdigest()
        self.path = storage.folder("stops") / f"{key}.stop"

    def is_set(self) -> bool:
        return self.path.exists()

    def set(self) -> None:
        """Ask the run to stop after its current step, or not to start if it has not yet."""
        self.path.touch()

    def __call__(self) -> bool:  # the engine's should_stop
        return self.is_set()

    def __enter__(self) -> "StopFlag":
        return self

    def __exit__(self, *exc) -> None:
        self.path.unlink(missing_ok=True)
