"""Documents whose shell blocks run as tests (tests/docs/shellblocks.py)."""
