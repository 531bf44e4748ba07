"""mcptb-server: the stdio MCP server that answers relay requests with the MCP client's model."""
