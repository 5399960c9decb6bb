"""A small grpcurl stand-in over server reflection: list, describe, call with JSON.

grpcurl cannot be installed on the project's machines; this does what the
README's grpcurl examples do, through the same reflection service, so the
tests can prove that grpcurl would work.

    python scripts/reflect.py 127.0.0.1:50051 list
    python scripts/reflect.py 127.0.0.1:50051 describe custops.plan.v1.OperationPlanService
    python scripts/reflect.py 127.0.0.1:50051 call custops.plan.v1.OperationPlanService/GetPlan \
        '{"shopId": "shop-1", "planId": "..."}'
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import grpc
from google.protobuf import descriptor, descriptor_pool, json_format, message_factory
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from custops.client import CustopsError
from custops.client.cli_connection import TOKEN_ENV, one_line


class ReflectionClient:
    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self._db = ProtoReflectionDescriptorDatabase(self.channel)
        self._pool = descriptor_pool.DescriptorPool(self._db)

    def close(self) -> None:
        self.channel.close()

    def list_services(self) -> list[str]:
        return sorted(self._db.get_services())

    def service(self, name: str) -> descriptor.ServiceDescriptor:
        return self._pool.FindServiceByName(name)

    def method(self, full_method: str) -> descriptor.MethodDescriptor:
        service, _, name = full_method.replace("/", ".").rpartition(".")
        return self.service(service).methods_by_name[name]

    def describe(self, symbol: str) -> str:
        """A readable description, like `grpcurl describe`."""
        try:
            svc = self.service(symbol)
        except KeyError:
            method = self.method(symbol)
            return (
                f"rpc {method.name} ( .{method.input_type.full_name} ) "
                f"returns ( .{method.output_type.full_name} );"
            )
        lines = [f"service {svc.name} {{"]
        for m in svc.methods:
            request, response = m.input_type.full_name, m.output_type.full_name
            lines.append(f"  rpc {m.name} ( .{request} ) returns ( .{response} );")
        lines.append("}")
        return "\n".join(lines)

    def call(
        self, full_method: str, body: str, metadata: tuple[tuple[str, str], ...] = ()
    ) -> dict[str, Any]:
        """Call a unary method with a JSON request; the JSON response, like grpcurl."""
        method = self.method(full_method)
        request_class = message_factory.GetMessageClass(method.input_type)
        response_class = message_factory.GetMessageClass(method.output_type)
        request = json_format.Parse(body or "{}", request_class())
        stub = self.channel.unary_unary(
            f"/{method.containing_service.full_name}/{method.name}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response_class.FromString,
        )
        response = stub(request, timeout=10, metadata=metadata)
        return json_format.MessageToDict(response)


def main() -> int:
    parser = argparse.ArgumentParser(description="list, describe and call over gRPC reflection")
    parser.add_argument("target")
    parser.add_argument("verb", choices=("list", "describe", "call"))
    parser.add_argument("symbol", nargs="?")
    parser.add_argument("body", nargs="?", default="{}")
    parser.add_argument(
        "--token", default=os.environ.get(TOKEN_ENV), help=f"bearer token (default: ${TOKEN_ENV})"
    )
    parser.add_argument(
        "-H",
        dest="headers",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header, as grpcurl's -H (repeatable)",
    )
    args = parser.parse_args()
    if args.verb in ("describe", "call") and not args.symbol:
        parser.error(f"{args.verb} needs a symbol, e.g. custops.plan.v1.OperationPlanService")
    metadata = [tuple(h.split(":", 1)) for h in args.headers if ":" in h]
    if len(metadata) != len(args.headers):
        parser.error("-H takes 'name: value'")
    if args.token:
        metadata.append(("authorization", f"Bearer {args.token}"))
    headers = tuple((name.strip().lower(), value.strip()) for name, value in metadata)
    client = ReflectionClient(args.target)
    try:
        if args.verb == "list":
            print("\n".join(client.list_services()))
        elif args.verb == "describe":
            print(client.describe(args.symbol))
        else:
            print(
                json.dumps(
                    client.call(args.symbol, args.body, headers), indent=2, ensure_ascii=False
                )
            )
    except grpc.RpcError as exc:
        # The same one line as the custops commands: status, reason, fields, hint.
        print(f"ERROR: {one_line(CustopsError.from_rpc_error(exc), args.target)}", file=sys.stderr)
        return 1
    except KeyError:
        print(
            f"ERROR: {args.symbol!r} is not served there; `list` shows the services and "
            "`describe SERVICE` their methods (SERVICE/METHOD to call one)",
            file=sys.stderr,
        )
        return 1
    except json_format.ParseError as exc:
        print(
            f"ERROR: the request body is not a {args.symbol} request in JSON: {exc} "
            '(fields in lowerCamelCase, e.g. shopId; a field mask as "updateMask": "a,b.c")',
            file=sys.stderr,
        )
        return 1
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
