"""Real local servers that stand in for the system's outside peers in tests.

Each speaks its peer's real protocol over a real socket, so the production clients run
unchanged: no patched functions, no test hooks in the code under test.
"""
