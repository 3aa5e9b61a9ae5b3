"""User-facing errors.

Every problem a user can fix (a bad file, a wrong field, too few images) is raised as a
:class:`DermsynthError` whose message names the file, field or class and says what to do.
The CLI prints these without a traceback; anything else is a bug in dermsynth.
"""

from __future__ import annotations


class DermsynthError(Exception):
    """An error the user can act on; the message says what and how.

    ``exit_code`` is what the CLI exits with: 3 (bad input or data) unless a subclass says
    otherwise.
    """

    exit_code = 3


class ImageDecodeError(DermsynthError):
    """An image file is missing, truncated, corrupt or in an unsupported format."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"cannot read image {path}: {reason}. Replace or delete the file; "
            "`dermsynth data info --check-images` lists every unreadable file of a data set."
        )


class ConfigError(DermsynthError):
    """A config file or option is malformed; the message names the field."""

    exit_code = 2


class SplitError(DermsynthError):
    """A split cannot be made as asked (e.g. too few images in a class)."""


class LeakageError(DermsynthError):
    """Something derived from validation or test data would reach training."""

    exit_code = 1


class DataError(DermsynthError):
    """The data (files, tables, class counts) cannot support what was asked."""


class RunsFailedError(DermsynthError):
    """Training runs failed (each one's error is in its ``*.failed.json``)."""

    exit_code = 1


class StatisticsError(DermsynthError, ValueError):
    """A statistic cannot be computed from what was given (mismatched arms, too few seeds).
    Also a ValueError, so code that catches a ValueError from these functions keeps working."""


# The CLI's exit codes (documented in the README's command reference).
EXIT_OK = 0
EXIT_AUDIT_FAILED = 1  # an audit (leakage, memorization) found a problem, or runs failed
EXIT_USAGE = 2  # a bad flag or config value
EXIT_BAD_INPUT = 3  # bad input or data: unreadable files, too few images, missing folders


class ConfigDeprecationWarning(FutureWarning):
    """A config spelling that still works but will not forever; the message names the new one.
    (A FutureWarning, so Python shows it to users by default.)"""
