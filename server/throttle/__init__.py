"""Rate-controlled ("flow speed") processing: named token buckets.

Knows nothing about plans: any job that calls a downstream system asks a
bucket for as many tokens as items before each batch. `RedisBuckets` share
the rate across every replica; `LocalBuckets` are the in-process stand-in
used when no Redis is configured.
"""
