"""A small MCP backend for vmcp's end-to-end tests, built on the official SDK.

Run it with the test venv (scripts/install-peers.sh):

    .cache/venv/bin/python tests/peers/py_backend.py --transport streamable-http --port 9001 --name pyhttp
    .cache/venv/bin/python tests/peers/py_backend.py --transport sse --port 9002 --name pysse
    .cache/venv/bin/python tests/peers/py_backend.py --transport stdio --name pystdio

HTTP transports always bind 127.0.0.1. Endpoints: streamable HTTP at
`/mcp`, legacy HTTP+SSE at `/sse` (messages posted to `/messages/`).
In stdio mode nothing but protocol messages is written to stdout.

Catalogue (NAME is --name):
  tools      echo(text) -> text          add(a, b) -> a + b
             whoami() -> NAME            slow(seconds) sleeps, progress every 0.1 s
             fail() -> tool error        stats() -> JSON counters of slow() calls
                                         (started, completed, cancelled, in_flight,
                                         peak_in_flight)
             toggle_extra() adds/removes a tool `extra` and announces
                            notifications/tools/list_changed
  resources  py://NAME/info              py://shared/owner (same URI on every
                                         instance; its text is NAME)
  templates  py://items/{item_id}        -> "item <id> from NAME"
  prompts    greet(name)

  Towards the client (relayed by vmcp to the session whose call caused them):
  tools      ask_llm(prompt, then_steps=0) -> the client's sampling answer, as
                             "model: text" (then `then_steps` progress steps)
             ask_user(question) -> the client's elicitation answer, "action: answer"
             ask_url(url) -> URL-mode elicitation, then (accepted)
                             notifications/elicitation/complete; "action: id"
             my_roots() -> the client's roots (roots/list, sent the SDK's way:
                           on the standalone stream), as JSON
             log_all(tag) -> sends debug, info, warning and error log messages
                             whose data is "<level> <tag>"
             touch() -> notifications/resources/updated for py://NAME/watched
             upstream_state() -> JSON: log levels set on this backend, the
                                 URIs subscribed now, and how many
                                 notifications/roots/list_changed arrived
             refuse_subscribe(times) -> the next `times` resources/subscribe
                                 are refused, each after 0.5 s
  resources  py://NAME/watched (subscribable: resources/subscribe and
                                unsubscribe are served)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import anyio
import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel

LOOPBACK = "127.0.0.1"
PROGRESS_INTERVAL = 0.1


def build_server(name: str, transport: str) -> MCPServer:
    server = MCPServer(
        name,
        instructions=f"vmcp e2e test backend {name!r}",
        version="1.0.0",
        log_level="WARNING",
    )
    # peak_in_flight: most slow() calls running at once since start.
    counters = {"started": 0, "completed": 0, "cancelled": 0, "in_flight": 0, "peak_in_flight": 0}

    @server.tool()
    def echo(text: str) -> str:
        """Return `text` unchanged."""
        return text

    @server.tool()
    def add(a: int, b: int) -> int:
        """Return a + b."""
        return a + b

    @server.tool()
    def whoami() -> str:
        """Return the name this backend was started with."""
        return name

    @server.tool()
    async def slow(seconds: float, ctx: Context) -> str:
        """Sleep for `seconds`, reporting progress every 0.1 s when the caller asked for it."""
        counters["started"] += 1
        counters["in_flight"] += 1
        counters["peak_in_flight"] = max(counters["peak_in_flight"], counters["in_flight"])
        deadline = time.monotonic() + max(0.0, seconds)
        try:
            step = 0
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                await anyio.sleep(min(PROGRESS_INTERVAL, left))
                step += 1
                # A no-op when the request carried no progress token.
                await ctx.report_progress(
                    progress=min(step * PROGRESS_INTERVAL, seconds),
                    total=seconds,
                    message=f"{name} slow step {step}",
                )
        except anyio.get_cancelled_exc_class():
            counters["cancelled"] += 1
            raise
        finally:
            counters["in_flight"] -= 1
        counters["completed"] += 1
        return f"slept {seconds} on {name}"

    @server.tool()
    def fail() -> str:
        """Always fails with a tool error."""
        raise ToolError(f"fail() called on {name}: this tool always fails")

    @server.tool()
    def stats() -> str:
        """Counters of slow() calls in this process, as JSON text."""
        return json.dumps(counters, sort_keys=True)

    def extra() -> str:
        """A tool that appears and disappears through toggle_extra()."""
        return f"extra from {name}"

    @server.tool()
    async def toggle_extra(ctx: Context) -> str:
        """Add the tool `extra` if absent, remove it if present; announce the change."""
        names = {t.name for t in await server.list_tools()}
        if "extra" in names:
            server.remove_tool("extra")
            outcome = "removed"
        else:
            server.add_tool(extra, name="extra")
            outcome = "added"
        # Handshake-era sessions: on the session's standalone channel (the GET
        # stream for streamable HTTP, the single stream for SSE and stdio), as
        # a server announcing an unprompted change would.
        await ctx.session.send_notification(types.ToolListChangedNotification())
        # 2026-07-28 sessions: through subscriptions/listen.
        await ctx.notify_tools_changed()
        return outcome

    @server.resource(f"py://{name}/info", mime_type="text/plain")
    def info() -> str:
        """Which backend this is."""
        return f"backend {name} over {transport}"

    @server.resource("py://shared/owner", mime_type="text/plain")
    def shared_owner() -> str:
        """Same URI on every instance; names the instance that answered."""
        return name

    @server.resource("py://items/{item_id}", mime_type="text/plain")
    def item(item_id: str) -> str:
        """An item by id, stamped with the backend name."""
        return f"item {item_id} from {name}"

    @server.tool()
    async def ask_llm(prompt: str, ctx: Context, then_steps: int = 0) -> str:
        """Ask the client's model (sampling/createMessage) and return its answer;
        report `then_steps` steps of progress after it answered."""
        result = await ctx.session.create_message(
            messages=[types.SamplingMessage(role="user", content=types.TextContent(type="text", text=prompt))],
            max_tokens=50,
            related_request_id=ctx.request_id,
        )
        for step in range(1, then_steps + 1):
            await ctx.report_progress(step, then_steps)
            await anyio.sleep(0.05)
        content = result.content
        text = content.text if isinstance(content, types.TextContent) else str(content)
        return f"{result.model}: {text}"

    class Answer(BaseModel):
        answer: str

    @server.tool()
    async def ask_user(question: str, ctx: Context) -> str:
        """Ask the client's user (elicitation/create, form mode)."""
        result = await ctx.elicit(question, Answer)
        data = result.data.answer if result.action == "accept" and result.data else ""
        return f"{result.action}: {data}"

    url_elicitations = {"n": 0}

    @server.tool()
    async def ask_url(url: str, ctx: Context) -> str:
        """Send the user to `url` (URL-mode elicitation); once accepted, announce its completion."""
        url_elicitations["n"] += 1
        elicitation_id = f"{name}-{url_elicitations['n']}"
        result = await ctx.elicit_url("Please finish this at the link", url, elicitation_id)
        if result.action == "accept":
            # Out of band in real life; on the standalone stream, as the SDK sends it.
            await ctx.session.send_elicit_complete(elicitation_id)
        return f"{result.action}: {elicitation_id}"

    @server.tool()
    async def my_roots(ctx: Context) -> str:
        """The client's roots (roots/list)."""
        result = await ctx.session.list_roots()
        return json.dumps([str(root.uri) for root in result.roots])

    @server.tool()
    async def log_all(tag: str, ctx: Context) -> str:
        """Log one message at each of debug, info, warning and error."""
        for level in ("debug", "info", "warning", "error"):
            await ctx.log(level, f"{level} {tag}", logger_name="tool")
        return "logged"

    watched = f"py://{name}/watched"
    upstream: dict[str, Any] = {"levels": [], "subscribed": [], "roots_changed": 0}
    refusals = {"left": 0}

    @server.tool()
    async def touch(ctx: Context) -> str:
        """Announce that py://NAME/watched changed."""
        await ctx.session.send_resource_updated(watched)
        return "touched"

    @server.tool()
    def upstream_state() -> str:
        """Log levels set on this backend, and the URIs subscribed now."""
        return json.dumps(upstream, sort_keys=True)

    @server.tool()
    def refuse_subscribe(times: int) -> str:
        """Refuse the next `times` resources/subscribe requests (slowly)."""
        refusals["left"] = times
        return f"refusing {times}"

    @server.resource(watched, mime_type="text/plain")
    def watched_resource() -> str:
        """A resource clients can subscribe to; touch() announces updates."""
        return f"watched on {name}"

    async def on_subscribe(_ctx, params: types.SubscribeRequestParams) -> types.EmptyResult:
        if refusals["left"] > 0:
            refusals["left"] -= 1
            await anyio.sleep(0.5)
            raise MCPError(-32603, "subscriptions are refused right now")
        if str(params.uri) not in upstream["subscribed"]:
            upstream["subscribed"].append(str(params.uri))
        return types.EmptyResult()

    async def on_unsubscribe(_ctx, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        if str(params.uri) in upstream["subscribed"]:
            upstream["subscribed"].remove(str(params.uri))
        return types.EmptyResult()

    async def on_set_level(_ctx, params: types.SetLevelRequestParams) -> types.EmptyResult:
        upstream["levels"].append(params.level)
        return types.EmptyResult()

    async def on_roots_changed(_ctx, _params: types.NotificationParams) -> None:
        upstream["roots_changed"] += 1

    lowlevel = server._lowlevel_server  # noqa: SLF001 - the SDK's documented handler registry
    lowlevel.add_notification_handler("notifications/roots/list_changed", types.NotificationParams, on_roots_changed)
    lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, on_subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, on_unsubscribe)
    lowlevel.add_request_handler("logging/setLevel", types.SetLevelRequestParams, on_set_level)

    backend = name  # the prompt's own argument is called `name`

    @server.prompt()
    def greet(name: str) -> str:  # noqa: F811 - shadows the backend name on purpose
        """Greet someone by name."""
        return f"Hello {name}, greetings from {backend}."

    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--transport", choices=["sse", "streamable-http", "stdio"], default="streamable-http")
    parser.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (HTTP transports)")
    parser.add_argument("--name", default="py", help="backend name, returned by whoami()")
    parser.add_argument(
        "--stateless", action="store_true", help="streamable HTTP without sessions, JSON responses"
    )
    parser.add_argument(
        "--startup-delay", type=float, default=0.0, help="sleep this long before serving (slow-start tests)"
    )
    args = parser.parse_args(argv)

    if args.transport != "stdio" and not 0 < args.port < 65536:
        parser.error("--port is required for HTTP transports")
    if args.stateless and args.transport != "streamable-http":
        parser.error("--stateless only applies to --transport streamable-http")

    if args.startup_delay > 0:
        time.sleep(args.startup_delay)

    server = build_server(args.name, args.transport)
    if args.transport == "stdio":
        server.run("stdio")
    elif args.transport == "sse":
        server.run("sse", host=LOOPBACK, port=args.port)
    else:
        server.run(
            "streamable-http",
            host=LOOPBACK,
            port=args.port,
            stateless_http=args.stateless,
            json_response=args.stateless,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
