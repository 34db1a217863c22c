"""Errors whose message is meant for the user: one sentence, no traceback."""


class BloodcellError(Exception):
    """A problem the user can fix (missing data, bad file, missing model)."""


class ImageReadError(BloodcellError):
    """An input that is not a usable image; the message says why."""
