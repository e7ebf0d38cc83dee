"""The two ways a lookup fails, which decide what happens to a stored handle."""


class Unreachable(Exception):
    """A resolver could not be asked (timeout, connection error, 5xx): nothing is known.

    The stored handle stays as it was and the lookup is retried later.
    """


class Refused(Exception):
    """A definite answer that proves nothing: no such host or record, a private address, a
    redirect, an oversized or malformed answer. The claim it was asked for does not hold."""
