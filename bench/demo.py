"""``python -m bench.demo`` (``just demo``): one streamed answer through the whole real path, with a
CANNED model standing in for the MCP client's model.

It starts the relay (port 0, its socket in a temp directory), then plays an MCP client: it spawns the
real ``mcptb-server`` over stdio with the ``mcp`` SDK's ClientSession (2025 handshake, sampling
declared), whose sampling callback returns a fixed text instead of asking a model. Once ``GET /health``
shows that worker able to sample, the openai SDK streams one chat completion through the relay and the
text is printed as it arrives. Then everything stops: closing the MCP session ends ``mcptb-server``
(end of its stdin), and the relay is terminated.
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from typing import Any

import anyio
import anyio.to_thread
import mcp_types as types
import openai
from mcp import ClientSession, StdioServerParameters, stdio_client

from ._procs import ROOT, temporary_children

CANNED_MODEL = "canned-demo-model"
CANNED_TEXT = (
    "Hello! This text is canned: the demo's MCP client returns it for every sampling request. "
    "It still travelled the real path, from the MCP client through mcptb-server and the relay to you."
)
PROMPT = "Say hello through the bridge."

BANNER = """\
================================================================================
  MCP Token Bridge demo - the model is CANNED, not a real model.
  The stand-in MCP client answers every sampling request with one fixed text.
================================================================================"""

PATH = """\
The path this answer took:
  openai SDK (HTTP client)
    -> relay: POST /v1/chat/completions on {url} (h11, SSE)
    -> Unix socket {socket} (shared_protocol: request / start, text, end)
    -> mcptb-server (the real MCP server, stdio)
    -> MCP sampling/createMessage to the MCP client (here: this demo's ClientSession)
    -> canned model (a sampling callback returning fixed text)
  and back the same way. MCP sampling returns the whole answer at once, so its text came in one chunk."""


async def canned_model(context: Any, params: types.CreateMessageRequestParams) -> types.CreateMessageResult:
    return types.CreateMessageResult(
        role="assistant",
        model=CANNED_MODEL,
        stop_reason="endTurn",
        content=types.TextContent(text=CANNED_TEXT),
    )


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


def wait_for_sampling_worker(url: str, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for worker in get_json(url + "/health")["workers"]:
            if "sampling" in worker["modes"] and worker["free_slots"] > 0:
                return dict(worker)
        time.sleep(0.1)
    raise RuntimeError(f"no sampling worker in {url}/health within {timeout:g} s")


def stream_one(url: str, model: str) -> None:
    with openai.OpenAI(base_url=url + "/v1", api_key="unused") as client:
        stream = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": PROMPT}], stream=True
        )
        chunks, finish = 0, None
        for chunk in stream:
            chunks += 1
            if chunk.choices:
                finish = chunk.choices[0].finish_reason or finish
                print(chunk.choices[0].delta.content or "", end="", flush=True)
    print(f"\n\n({chunks} chunks received, finish_reason={finish})")


async def run_client(url: str, socket: str, errlog_path: str) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "mcp_server", "--socket", socket], cwd=str(ROOT))
    with open(errlog_path, "w") as errlog:
        async with (
            stdio_client(params, errlog=errlog) as (read, write),
            ClientSession(
                read,
                write,
                sampling_callback=canned_model,
                client_info=types.Implementation(name="demo-client (canned model)", version="1"),
            ) as session,
        ):
            await session.initialize()
            print("MCP client: started mcptb-server over stdio and finished the MCP handshake")
            worker = await anyio.to_thread.run_sync(wait_for_sampling_worker, url)
            model = worker["models"][0]
            who = f"worker {worker['id']} ({worker['client']['name']})"
            print(f"relay /health: {who}, modes={worker['modes']}, model id {model!r}")
            print(f"\nopenai SDK, stream=True, model={model!r}, prompt {PROMPT!r}:\n")
            await anyio.to_thread.run_sync(stream_one, url, model)
    print("MCP client: session closed, mcptb-server stopped")


def main() -> None:
    print(BANNER)
    with temporary_children("mcptb-demo-") as (children, tmp):  # a canned model stays out of your ledger
        socket = os.path.join(tmp, "relay.sock")
        relay = children.start_server("relay", ["-m", "relay", "--port", "0", "--socket", socket])
        print(f"relay: listening on {relay.url} (started in {relay.seconds_to_banner * 1000:.0f} ms)")
        anyio.run(run_client, relay.url, socket, os.path.join(tmp, "mcptb-server.log"))
        print()
        print(PATH.format(url=relay.url, socket=socket))
    print("\nrelay stopped; demo done (the model was canned).")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
