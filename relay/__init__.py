"""mcptb-relay: an OpenAI-compatible HTTP/1.1 server (h11 + anyio) answered by MCP workers.

Never imports ``mcp``: the relay must start in a blink. See docs/architecture.md.
"""
