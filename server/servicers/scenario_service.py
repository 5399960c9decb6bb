"""custops.scenario.v1.ScenarioAggregationService: the shoppers' side.

Its calls come with the scenario-aggregation issue; until then every RPC
falls through to the generated base class, answered UNIMPLEMENTED.
"""

from __future__ import annotations

from custops.scenario.v1 import scenario_pb2_grpc


class ScenarioAggregationService(scenario_pb2_grpc.ScenarioAggregationServiceServicer):
    pass
