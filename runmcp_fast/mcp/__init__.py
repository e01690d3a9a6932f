"""MCP at the edge: Streamable HTTP proxying, OpenAPI services as MCP servers, federation."""
