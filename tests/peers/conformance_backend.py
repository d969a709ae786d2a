"""The server side of the official MCP conformance scenarios, built on the
official Python SDK, as a backend for vmcp's conformance test.

The conformance suite (`@modelcontextprotocol/conformance`, server
scenarios) checks a server against fixed tools, resources and prompts that
each scenario's description names (run `conformance list`; the descriptions
are in the package). The suite's own reference server is not published on
npm or PyPI, so this is an implementation of those descriptions: the test
runs the suite against it directly and through vmcp and compares.

    .cache/venv/bin/python tests/peers/conformance_backend.py --port 9100

Binds 127.0.0.1 only; streamable HTTP at /mcp.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
from typing import Any

import anyio
import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.mcpserver.prompts.base import UserMessage

LOOPBACK = "127.0.0.1"

# A 1x1 red PNG and a 44-byte silent WAV header with one sample.
PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de"
        "0000000c4944415408d763f8cfc000000301010018dd8db00000000049454e44ae426082"
    )
).decode()
WAV = base64.b64encode(
    b"RIFF" + (38).to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
    + (1).to_bytes(2, "little") + (1).to_bytes(2, "little") + (8000).to_bytes(4, "little")
    + (16000).to_bytes(4, "little") + (2).to_bytes(2, "little") + (16).to_bytes(2, "little")
    + b"data" + (2).to_bytes(4, "little") + b"\x00\x00"
).decode()


def text(value: str) -> types.TextContent:
    return types.TextContent(type="text", text=value)


def build_server() -> MCPServer:
    server = MCPServer("vmcp-conformance-backend", version="1.0.0", log_level="WARNING")

    @server.tool(description="Returns a simple text response")
    def test_simple_text() -> list[Any]:
        return [text("This is a simple text response for testing.")]

    @server.tool(description="Returns a PNG image")
    def test_image_content() -> list[Any]:
        return [types.ImageContent(type="image", data=PNG, mime_type="image/png")]

    @server.tool(description="Returns WAV audio")
    def test_audio_content() -> list[Any]:
        return [types.AudioContent(type="audio", data=WAV, mime_type="audio/wav")]

    @server.tool(description="Returns an embedded resource")
    def test_embedded_resource() -> list[Any]:
        return [
            types.EmbeddedResource(
                type="resource",
                resource=types.TextResourceContents(
                    uri="test://embedded-resource",
                    mime_type="text/plain",
                    text="This is an embedded resource content.",
                ),
            )
        ]

    @server.tool(description="Returns text, an image and a resource")
    def test_multiple_content_types() -> list[Any]:
        return [
            text("Multiple content types test:"),
            types.ImageContent(type="image", data=PNG, mime_type="image/png"),
            types.EmbeddedResource(
                type="resource",
                resource=types.TextResourceContents(
                    uri="test://mixed-content-resource",
                    mime_type="application/json",
                    text=json.dumps({"test": "data", "value": 123}),
                ),
            ),
        ]

    @server.tool(description="Sends three info log messages while it runs")
    async def test_tool_with_logging(ctx: Context) -> str:
        for i, message in enumerate(("Tool execution started", "Tool processing data", "Tool execution completed")):
            if i:
                await anyio.sleep(0.05)
            await ctx.log("info", message)
        return "Tool with logging executed successfully"

    @server.tool(description="Always fails")
    def test_error_handling() -> str:
        raise ToolError("This tool intentionally returns an error for testing")

    @server.tool(description="Reports progress 0, 50 and 100 of 100")
    async def test_tool_with_progress(ctx: Context) -> str:
        for i, progress in enumerate((0, 50, 100)):
            if i:
                await anyio.sleep(0.05)
            await ctx.report_progress(progress=progress, total=100)
        return "Tool with progress executed successfully"

    @server.tool(description="Asks the client's model")
    async def test_sampling(prompt: str, ctx: Context) -> str:
        result = await ctx.session.create_message(
            messages=[types.SamplingMessage(role="user", content=text(prompt))],
            max_tokens=100,
            related_request_id=ctx.request_id,
        )
        content = result.content
        answer = content.text if isinstance(content, types.TextContent) else str(content)
        return f"LLM response: {answer}"

    async def elicit(ctx: Context, message: str, schema: dict[str, Any]) -> types.ElicitResult:
        return await ctx.session.elicit(message, schema, related_request_id=ctx.request_id)

    def completed(result: types.ElicitResult) -> str:
        return f"Elicitation completed: action={result.action}, content={json.dumps(result.content)}"

    @server.tool(description="Asks the client's user for a username and email")
    async def test_elicitation(message: str, ctx: Context) -> str:
        result = await elicit(
            ctx,
            message,
            {
                "type": "object",
                "properties": {
                    "username": {"type": "string", "description": "User's response"},
                    "email": {"type": "string", "description": "User's email address"},
                },
                "required": ["username", "email"],
            },
        )
        return f"User response: action={result.action}, content={json.dumps(result.content)}"

    @server.tool(description="Elicitation with a default for every primitive type (SEP-1034)")
    async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
        result = await elicit(
            ctx,
            "Please review and update the form fields with defaults",
            {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "User name", "default": "John Doe"},
                    "age": {"type": "integer", "description": "User age", "default": 30},
                    "score": {"type": "number", "description": "User score", "default": 95.5},
                    "status": {
                        "type": "string",
                        "description": "User status",
                        "enum": ["active", "inactive", "pending"],
                        "default": "active",
                    },
                    "verified": {"type": "boolean", "description": "Verification status", "default": True},
                },
                "required": [],
            },
        )
        return completed(result)

    @server.tool(description="Elicitation with all five enum forms (SEP-1330)")
    async def test_elicitation_sep1330_enums(ctx: Context) -> str:
        result = await elicit(
            ctx,
            "Please select options from the enum fields",
            {
                "type": "object",
                "properties": {
                    "untitledSingle": {"type": "string", "enum": ["option1", "option2", "option3"]},
                    "titledSingle": {
                        "type": "string",
                        "oneOf": [
                            {"const": "value1", "title": "First Option"},
                            {"const": "value2", "title": "Second Option"},
                            {"const": "value3", "title": "Third Option"},
                        ],
                    },
                    "legacyEnum": {
                        "type": "string",
                        "enum": ["opt1", "opt2", "opt3"],
                        "enumNames": ["Option One", "Option Two", "Option Three"],
                    },
                    "untitledMulti": {
                        "type": "array",
                        "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
                    },
                    "titledMulti": {
                        "type": "array",
                        "items": {
                            "anyOf": [
                                {"const": "value1", "title": "First Choice"},
                                {"const": "value2", "title": "Second Choice"},
                                {"const": "value3", "title": "Third Choice"},
                            ]
                        },
                    },
                },
                "required": [],
            },
        )
        return completed(result)

    @server.resource("test://static-text", mime_type="text/plain", description="A static text resource")
    def static_text() -> str:
        return "This is the content of the static text resource."

    @server.resource("test://static-binary", mime_type="image/png", description="A static PNG")
    def static_binary() -> bytes:
        return base64.b64decode(PNG)

    @server.resource("test://watched-resource", mime_type="text/plain", description="A subscribable resource")
    def watched() -> str:
        return "watched"

    @server.resource("test://template/{id}/data", mime_type="application/json", description="Data by id")
    def template(id: str) -> str:  # noqa: A002 - the template's own variable name
        return json.dumps({"id": id, "templateTest": True, "data": f"Data for ID: {id}"})

    subscribed: set[str] = set()

    async def on_subscribe(_ctx: Any, params: types.SubscribeRequestParams) -> types.EmptyResult:
        subscribed.add(str(params.uri))
        return types.EmptyResult()

    async def on_unsubscribe(_ctx: Any, params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        subscribed.discard(str(params.uri))
        return types.EmptyResult()

    async def on_set_level(_ctx: Any, params: types.SetLevelRequestParams) -> types.EmptyResult:
        return types.EmptyResult()

    lowlevel = server._lowlevel_server  # noqa: SLF001 - the SDK's handler registry
    lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, on_subscribe)
    lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, on_unsubscribe)
    lowlevel.add_request_handler("logging/setLevel", types.SetLevelRequestParams, on_set_level)

    @server.prompt(description="A prompt without arguments")
    def test_simple_prompt() -> list[types.PromptMessage]:
        return [types.PromptMessage(role="user", content=text("This is a simple prompt for testing."))]

    @server.prompt(description="A prompt with two arguments")
    def test_prompt_with_arguments(arg1: str, arg2: str) -> list[types.PromptMessage]:
        return [types.PromptMessage(role="user", content=text(f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"))]

    @server.prompt(description="A prompt embedding a resource")
    def test_prompt_with_embedded_resource(resourceUri: str) -> list[UserMessage]:  # noqa: N803
        return [
            UserMessage(
                types.EmbeddedResource(
                    type="resource",
                    resource=types.TextResourceContents(
                        uri=resourceUri, mime_type="text/plain", text="Embedded resource content for testing."
                    ),
                )
            ),
            UserMessage("Please process the embedded resource above."),
        ]

    @server.prompt(description="A prompt with an image")
    def test_prompt_with_image() -> list[UserMessage]:
        return [
            UserMessage(types.ImageContent(type="image", data=PNG, mime_type="image/png")),
            UserMessage("Please analyze the image above."),
        ]

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> types.Completion:
        values = [v for v in ("paris", "park", "party") if v.startswith(argument.value or "")]
        return types.Completion(values=values, total=len(values), has_more=False)

    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    args = parser.parse_args(argv)
    build_server().run("streamable-http", host=LOOPBACK, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
