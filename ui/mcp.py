"""One fix to Gradio's MCP server (6.31): a tool call without a progress token gets a multi-output tool's answer
as one text, the repr of the outputs' tuple (local file paths included), instead of one content item per output.
Here both kinds of call read the job's final outputs the same way, so an agent always gets the image once (as MCP
image content with its URL) and the status line as text. tests/test_mcp.py fails if Gradio renames the method."""

from __future__ import annotations

from typing import Any

from gradio.mcp import GradioMCPServer


async def _final_outputs(self: GradioMCPServer, job: Any) -> list[Any]:
    """The job's last outputs as the server sent them (file data with URLs), or its error (or its cancellation)
    as an exception with one message."""
    output: dict[str, Any] = {}
    async for update in job:
        if update.type == "output" and update.final:
            output = update.outputs
            if not update.success:
                raise RuntimeError(": ".join(str(part) for part in (output.get("title"), output.get("error"))
                                             if part) or "Error!")
    if "data" not in output:  # cancelled, or its stream broke: no final output to answer with
        raise RuntimeError("The call ended without a result (it was cancelled or its connection broke); call the "
                           "tool again.") from job.exception()
    if job.exception():
        raise job.exception()
    return output["data"]


def install() -> None:
    GradioMCPServer._execute_tool_without_progress = _final_outputs
