"""Errors a user can act on, and the exit codes they map to."""

EXIT_OK = 0
EXIT_REGRESSION = 1
"""A regression (compare) or a failed cell (run) was found."""
EXIT_USAGE = 2
"""Bad usage or bad input: a missing file, a malformed suite, an unknown name."""


class HarnessError(Exception):
    """An error the user can fix; the CLI prints it without a traceback and exits 2."""


class SuiteError(HarnessError):
    """A suite file is malformed: names the file, the key and what is allowed."""


class RegistryError(HarnessError):
    """Two plugins register the same name, or a name is unknown."""


class DataError(HarnessError):
    """A data file is missing, truncated or malformed: names the file and what was wrong."""


class DeviceUnavailable(Exception):
    """A backend cannot run on the requested device here; the reason becomes the row's error."""
