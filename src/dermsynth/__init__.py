"""dermsynth: measure whether, when and how much synthetic images from diffusion models
improve medical image classifiers, with leakage-proof splits and reproducible runs."""

from importlib.metadata import PackageNotFoundError, version

try:  # one source of truth: the version in pyproject.toml
    __version__ = version("dermsynth")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0+unknown"

from dermsynth.cpu import keep_onednn_off_amx  # noqa: E402  (before torch makes a kernel)

keep_onednn_off_amx()
