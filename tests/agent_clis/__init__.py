"""Other agent CLIs (Codex CLI, Gemini CLI) as MCP clients of mcptb-server, driven by scripted model APIs."""
