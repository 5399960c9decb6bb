"""The running custops service: gRPC servicers, use cases, persistence, stubs."""
