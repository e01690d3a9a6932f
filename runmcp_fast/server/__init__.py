"""The client side: listening sockets, the HTTP/1.1 protocol, limits and local responses."""
