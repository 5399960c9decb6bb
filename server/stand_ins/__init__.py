"""Stand-ins for the downstream systems (audience, benefit, notification).

They behave like other teams' systems so that the platform is tested
against something real: a deterministic synthetic population
(population.py) evaluated by the audience stand-in (audience.py), a benefit
platform with templates, stock and idempotent grants (benefit_book.py,
benefit.py), a message channel (notify.py), and capacity and faults on
demand for all three (pressure.py), changed at run time through
StubAdminService (admin.py). They serve on their own loopback port
(app.py), never on the platform's public port: embedded in `custops serve`
by default, or standalone with `custops stubs`.
"""
