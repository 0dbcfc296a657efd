"""The exceptions poolwatch raises. Each names what was wrong and where, for one-line messages."""

from __future__ import annotations


class PoolwatchError(Exception):
    """Base of every error poolwatch raises on purpose."""


class ReaderError(PoolwatchError):
    """A capture file could not be read (further). Names the file and the byte offset."""

    def __init__(self, path: str, offset: int | None, reason: str) -> None:
        self.path = path
        self.offset = offset
        self.reason = reason
        where = f"{path}" if offset is None else f"{path} at offset {offset}"
        super().__init__(f"{where}: {reason}")


class TruncatedTail(ReaderError):
    """The last record of a capture is cut short (a capture stopped mid-write): a warning,
    as tcpdump and Wireshark treat it; every whole record before it was read."""


class DecodeError(PoolwatchError):
    """A packet or message could not be decoded."""


class ConfigError(PoolwatchError):
    """An option or setting has a value poolwatch cannot use."""


class FingerprintError(PoolwatchError):
    """A fingerprint data file is invalid. Names the file, the entry or line, and what is wrong."""

    def __init__(self, path: str, where: str | None, reason: str) -> None:
        self.path = str(path)
        self.where = where
        self.reason = reason
        loc = self.path if where is None else f"{self.path}: {where}"
        super().__init__(f"{loc}: {reason}")
