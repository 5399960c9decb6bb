"""Use cases: one function per thing a caller can do, over the domain and its ports."""
