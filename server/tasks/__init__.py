"""The task engine: split -> load -> execute, for any kind of job.

Knows nothing about plans. A job kind says how to split a job into shards
(cursors), how to load a page of items from a cursor, and how to execute a
batch; the engine leases shards to workers, records progress and failures
in the database, and throttles batches through a token bucket.
"""
