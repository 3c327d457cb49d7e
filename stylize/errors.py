"""The one exception type users see: its message is meant to be shown as it is."""


class StylizeError(ValueError):
    """Bad input or an unusable resource; the message says what was wrong and what is valid."""
