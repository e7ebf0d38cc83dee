"""One logging setup for every process: level from ``LOG_LEVEL``, one line per record."""

import logging
import os


def configure_logging() -> None:
    # httpx logs every request at INFO; the identity worker makes thousands.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if logging.getLogger().handlers:
        return
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
