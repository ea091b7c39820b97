"""User-facing errors: the CLI prints them as one line (no traceback) and exits non-zero."""

import contextlib
import warnings


class MGMError(Exception):
    """An error caused by the user's input or environment, with a message fit to print as is."""


class Stopped(MGMError):
    """A stop signal (SIGTERM, SIGUSR1) ended the work early, its progress kept; the CLI exits with
    128 + the signal's number, as a run stopped by it does (mgm.train.stopping.exit_code)."""

    def __init__(self, signal_name: str, message: str):
        self.signal_name = signal_name
        super().__init__(message)


class VideoError(MGMError):
    """A video that cannot be used; the message names the file and the reason."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@contextlib.contextmanager
def warnings_about(subject: str):
    """Re-issue the warnings raised inside the block with `subject` in front ("clip.mp4 (frames from
    12): ..."): code that warns without knowing the file (a mask strategy) still names it for the
    user, who cannot act on a Python source line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
    for w in caught:
        warnings.warn(w.category(f"{subject}: {w.message}"), stacklevel=3)
