"""Stand-ins for the downstream systems (audience, benefit, notification).

They serve on their own loopback port, never on the platform's public port:
embedded in `custops serve` by default, or standalone with `custops stubs`.
Their realistic behaviour (synthetic population, inventory, idempotency,
capacity and faults) comes with the stubs issue; until then each RPC answers
UNIMPLEMENTED through the generated base classes.
"""
