"""A run function whose module refuses to load in worker processes that see $TRICKS_FAKE_NO_START."""

import os

from tests.claims_example.fake import fake_run

if os.environ.get("TRICKS_FAKE_NO_START"):
    raise RuntimeError("this module refuses to load here")


def run(*args, **kwargs):
    """`fake_run`, from a module that cannot be imported where $TRICKS_FAKE_NO_START is set."""
    return fake_run(*args, **kwargs)
