"""The one exception family of calo-ablate; the CLI catches it and prints its message."""


class CaloAblateError(Exception):
    """A problem the user can act on; the message names the file, key or value and what was expected."""


EXIT_ERROR = 2  # a command's exit code after a CaloAblateError
EXIT_INTERRUPTED = 130  # after a Ctrl-C


def error_line(err: CaloAblateError) -> str:
    """The error as a command shows it (no traceback)."""
    return f"calo-ablate: error: {err}"


class ConfigError(CaloAblateError):
    """An invalid configuration: unknown key, wrong type, bad registry entry."""


class DataError(CaloAblateError):
    """An unreadable or invalid data file."""


class DownloadError(CaloAblateError):
    """A download that failed or did not verify."""


class TrainingError(CaloAblateError):
    """A training run that cannot go on (a non-finite loss, say)."""
