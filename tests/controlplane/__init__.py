"""Control-plane tests: the server API on 127.0.0.1, the clients and the commands."""
