"""User-facing errors: the CLI prints them as one line (no traceback) and exits non-zero."""


class MGMError(Exception):
    """An error caused by the user's input or environment, with a message fit to print as is."""


class VideoError(MGMError):
    """A video that cannot be used; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")
