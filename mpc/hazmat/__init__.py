"""Raw primitives: TenSEAL contexts, Shamir sharing, Ed25519 group operations.

Nothing here enforces a policy. Use the recipes in :mod:`mpc` unless you are
writing a new one.
"""
