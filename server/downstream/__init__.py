"""Adapters implementing the domain's ports over gRPC to the downstream systems."""
