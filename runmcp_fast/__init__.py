"""runmcp_fast: a gateway for OpenAPI services and MCP servers with a compiled hot path."""

__version__ = "0.1.0"
