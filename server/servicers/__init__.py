"""Thin servicers: proto in, use case, proto out. One module per service."""
