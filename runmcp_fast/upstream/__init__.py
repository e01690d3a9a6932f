"""The upstream side: keep-alive connection pools and the response-parsing protocol."""
