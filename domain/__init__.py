"""The business of custops: operation plans and their rules, free of any framework.

Nothing here imports grpc, protobuf, SQLAlchemy or Redis; what the domain
needs from outside is declared as ports (typing.Protocol): the clock and
persistence in `ports.py`, the downstream systems in `downstream_ports.py`.
"""
