"""Agents: /stylize, /compare and /explore are MCP tools (launch(mcp_server=True)), described parameter by parameter, and
callable through an MCP client over the streamable HTTP transport."""

from __future__ import annotations

import asyncio
import base64
import io
import time
from dataclasses import fields

import httpx
import numpy as np
from conftest import gradient_photo
from PIL import Image

from stylize import Settings


def test_the_schema_lists_exactly_the_three_tools_with_every_parameter_described(server):
    tools = httpx.get(f"{server}gradio_api/mcp/schema", timeout=30).json()
    by_endpoint = {tool["meta"]["endpoint_name"]: tool for tool in tools}
    assert set(by_endpoint) == {"stylize", "compare", "explore", "enlarge"}  # internal events stay hidden
    assert by_endpoint["enlarge"]["description"].startswith("Make a finished result bigger")
    assert all(p.get("description") for p in by_endpoint["enlarge"]["inputSchema"]["properties"].values())
    stylize = by_endpoint["stylize"]
    assert stylize["description"].startswith("Paint a photo in the style of a painting")
    properties = stylize["inputSchema"]["properties"]
    expected = ["photo", "preset", "painting", "extra_paintings", "masks", "weights",
                *(f.name for f in fields(Settings))]
    assert list(properties) == expected
    for name, schema in properties.items():
        assert schema.get("description"), f"/stylize parameter {name} has no description"
    assert "starry_night" in properties["preset"]["description"]
    assert "one mask per painting" in properties["masks"]["description"]  # the tool explains spatial control
    compare = by_endpoint["compare"]["inputSchema"]["properties"]
    assert list(compare) == ["photo", "presets", "size", "steps", "seed", "weights", "both_models"]
    assert "Li & Wand" in compare["both_models"]["description"]
    assert all(schema.get("description") for schema in compare.values())
    explore = by_endpoint["explore"]
    assert explore["description"].startswith("Run one of the experiments of Gatys et al. (2015) as a grid")
    properties = explore["inputSchema"]["properties"]
    assert list(properties) == ["kind", "photo", "painting", "rows", "columns", "size", "steps", "seed", "preset",
                                "weights"]
    for name, schema in properties.items():
        assert schema.get("description"), f"/explore parameter {name} has no description"
    assert "reconstruction" in properties["kind"]["description"] and "relu1_1" in properties["rows"]["description"]
    assert properties["rows"]["type"] == "array" and "enum" not in properties["rows"]["items"]  # any layer list


async def _call_stylize(url: str, arguments: dict, with_progress: bool, tool: str = "stylize"):
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    progress = []

    async def on_progress(done, total, message):
        progress.append(message)

    async with streamable_http_client(url) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = [tool.name for tool in (await session.list_tools()).tools]
            result = await session.call_tool(tool, arguments,
                                             progress_callback=on_progress if with_progress else None)
            return tools, result, progress


def _photo_and_arguments():
    photo = gradient_photo(96, 64, seed=7)
    buffer = io.BytesIO()
    photo.save(buffer, "PNG")
    data_url = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    # Three steps at the lowest strength from the photo itself: the result must still be that photo, closely.
    arguments = {"photo": data_url, "preset": "starry_night", "size": 64, "steps": 3, "style_strength": 0.1}
    reference = np.asarray(photo.resize((64, 43), Image.Resampling.LANCZOS), dtype=float)
    return arguments, reference


def test_an_mcp_client_stylizes_a_small_image(server):
    """A client that follows progress gets the images as MCP image content."""
    arguments, reference = _photo_and_arguments()
    tools, result, progress = asyncio.run(_call_stylize(f"{server}gradio_api/mcp/", arguments, with_progress=True))
    assert tools == ["stylize", "compare", "explore", "enlarge"]
    assert not result.isError, result.content
    assert progress  # the run's progress was streamed
    images, texts = answer_parts(result)
    assert len(images) == 1, result.content  # the result once: no previews, no before/after pair
    image = Image.open(io.BytesIO(base64.b64decode(images[0].data))).convert("RGB")
    assert image.size == (64, 43)
    assert np.abs(np.asarray(image, dtype=float) - reference).mean() < 6
    assert [text for text in texts if not text.startswith("Image URL: ")] == [texts[-1]], texts  # one status line
    assert texts[-1].startswith("Done 3/3"), texts


def answer_parts(result) -> tuple[list, list[str]]:
    """An MCP answer's images and texts."""
    return ([item for item in result.content if item.type == "image"],
            [item.text for item in result.content if item.type == "text"])


def test_a_plain_mcp_client_gets_the_image_once_and_a_status_line(server):
    """Without a progress token too (Gradio 6.31 alone would answer with one repr text: ui/mcp.py), the answer is
    the image once (image content, and its URL) and one status line: no previews, loss table or local paths."""
    from gradio.mcp import GradioMCPServer

    assert hasattr(GradioMCPServer, "_execute_tool_without_progress"), "Gradio's MCP server changed: re-read ui/mcp.py"
    arguments, reference = _photo_and_arguments()
    _, result, _ = asyncio.run(_call_stylize(f"{server}gradio_api/mcp/", arguments, with_progress=False))
    assert not result.isError, result.content
    images, texts = answer_parts(result)
    assert len(images) == 1 and len(texts) == 2, result.content
    url = texts[0].removeprefix("Image URL: ")
    assert url.startswith("http") and url.endswith(".png") and texts[1].startswith("Done 3/3")
    for image in (Image.open(io.BytesIO(base64.b64decode(images[0].data))),
                  Image.open(io.BytesIO(httpx.get(url, timeout=30).content))):
        assert image.size == (64, 43)
        assert np.abs(np.asarray(image.convert("RGB"), dtype=float) - reference).mean() < 6


def test_an_mcp_compare_answers_with_one_sheet_and_a_status_line(server):
    """The compare tool's answer is the comparison sheet once (photo first, then each result), and its status."""
    arguments, reference = _photo_and_arguments()
    arguments = {"photo": arguments["photo"], "presets": ["starry_night", "the_scream"], "size": 64, "steps": 3}
    _, result, _ = asyncio.run(_call_stylize(f"{server}gradio_api/mcp/", arguments, with_progress=True, tool="compare"))
    assert not result.isError, result.content
    images = [item for item in result.content if item.type == "image"]
    texts = [item.text for item in result.content if item.type == "text"]
    assert len(images) == 1, result.content
    sheet = Image.open(io.BytesIO(base64.b64decode(images[0].data))).convert("RGB")
    assert sheet.width >= 3 * 64 and sheet.height > 43  # the photo and two results, captioned
    assert any("2/2 done" in text for text in texts), texts
    size = sum(len(item.data) for item in images) + sum(len(t) for t in texts)
    print(f"compare answer: {size} bytes")


def test_a_cancelled_call_is_answered_with_one_message(server, photo_file):
    """Issue 30: a job that ends without a final output (cancelled) gets one clear error, not a KeyError."""
    import pytest
    from gradio_client import Client, handle_file

    from ui.mcp import _final_outputs

    client = Client(server, verbose=False)
    try:
        job = client.submit(photo=handle_file(photo_file), preset="starry_night", size=64, steps=1000,
                            api_name="/stylize")
        while not job.outputs():  # the run is streaming
            time.sleep(0.1)
        job.cancel()
        with pytest.raises(RuntimeError, match=r"ended without a result \(it was cancelled"):
            asyncio.run(asyncio.wait_for(_final_outputs(None, job), 60))
    finally:
        client.close()
