"""The custops Python SDK: typed sync and async clients, generated from the
contracts, with deadlines, retries where the contract allows them, pagers
and errors by family.

    from custops.client import CustopsClient, NotFoundError, reasons
    from custops.plan.v1 import plan_pb2

    with CustopsClient("127.0.0.1:50051", metadata=[("authorization", "Bearer ...")]) as client:
        request = plan_pb2.CreatePlanRequest(
            shop_id="shop-1", plan=plan_pb2.Plan(display_name="Birthday")
        )
        plan = client.plans.create_plan(request).plan
        for each in client.plans.list_plans(plan_pb2.ListPlansRequest(shop_id="shop-1")):
            print(each.display_name)

Every RPC is a method of `client.plans` / `client.scenario` / `client.audit`
in snake_case (`await client.plans.get_plan(...)` with AsyncCustopsClient);
List calls return pagers. A failed call raises the CustopsError subclass of
its status code (ClientError or ServerError family) with the ErrorInfo
reason (a constant of `custops.client.reasons`), the field violations and
the request id.
"""

from custops.client import reasons
from custops.client._calls import AsyncPager, Pager
from custops.client._clients import AsyncCustopsClient, CustopsClient
from custops.client._errors import (
    AbortedError,
    AlreadyExistsError,
    CancelledError,
    ClientError,
    CustopsError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    ResourceExhaustedError,
    ServerError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    UnknownError,
)
from custops.client._retry import RetryPolicy

__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "AsyncCustopsClient",
    "AsyncPager",
    "CancelledError",
    "ClientError",
    "CustopsClient",
    "CustopsError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "OutOfRangeError",
    "Pager",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "ServerError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "UnknownError",
    "reasons",
]
