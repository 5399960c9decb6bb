"""The custops Python SDK: sync and async clients with deadlines, retries of
idempotent calls, and readable errors.

    from custops.client import CustopsClient
    from custops.plan.v1 import plan_pb2

    with CustopsClient("127.0.0.1:50051") as client:
        request = plan_pb2.CreatePlanRequest(
            shop_id="shop-1", plan=plan_pb2.Plan(display_name="Birthday")
        )
        plan = client.plans.CreatePlan(request).plan

Every RPC of a service is a method of `client.plans` / `client.scenario` / `client.audit`
(`await client.plans.GetPlan(...)` with AsyncCustopsClient). A failed call
raises CustopsError, which carries the status code, the ErrorInfo reason,
the field violations and the request id.
"""

from custops.client._clients import AsyncCustopsClient, CustopsClient
from custops.client._errors import CustopsError, FieldViolation
from custops.client._retry import RetryPolicy

__all__ = ["AsyncCustopsClient", "CustopsClient", "CustopsError", "FieldViolation", "RetryPolicy"]
