"""The one error type of the launcher's checks."""


class PreflightError(Exception):
    """A problem the user can fix before the run starts; its message is shown as is."""
