"""The request path: one connection from accept to close."""
