"""User-facing errors.

Every problem a user can fix (a bad file, a wrong field, too few images) is raised as a
:class:`DermsynthError` whose message names the file, field or class and says what to do.
The CLI prints these without a traceback; anything else is a bug in dermsynth.
"""

from __future__ import annotations


class DermsynthError(Exception):
    """An error the user can act on; the message says what and how."""


class ImageDecodeError(DermsynthError):
    """An image file is missing, truncated, corrupt or in an unsupported format."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"cannot read image {path}: {reason}. Replace or delete the file, or pass "
            "--skip-bad-images to skip unreadable images and list them in the report."
        )


class ConfigError(DermsynthError):
    """A config file or option is malformed; the message names the field."""


class SplitError(DermsynthError):
    """A split cannot be made as asked (e.g. too few images in a class)."""


class LeakageError(DermsynthError):
    """Something derived from validation or test data would reach training."""
