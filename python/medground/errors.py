"""Exceptions raised by medground.

Every error from the C library arrives as a subclass of :class:`MedgroundError`
carrying the C message (what failed and where). Each subclass also derives from
the built-in exception a Python user would expect, so ``except ValueError``
keeps working.
"""

from __future__ import annotations


class MedgroundError(Exception):
    """Base class of every medground error."""


class InvalidArgumentError(MedgroundError, ValueError):
    """A caller-supplied value is out of range."""


class FormatError(MedgroundError, ValueError):
    """A file or byte stream is malformed (checkpoint, image, JSON, vocabulary)."""


class ShapeError(MedgroundError, ValueError):
    """Tensor or array shapes do not agree."""


class DTypeError(MedgroundError, TypeError, ValueError):
    """Unsupported or mismatched element type."""


class MedgroundIOError(MedgroundError, OSError):
    """Opening, reading, writing or mapping a file failed."""


class OutOfMemoryError(MedgroundError, MemoryError):
    """An allocation failed or a size limit was exceeded."""


class NotFoundError(MedgroundError, LookupError):
    """A named tensor, key, record or file does not exist."""


class UnsupportedError(MedgroundError, NotImplementedError):
    """Valid input that this build cannot handle."""


class UnsafeError(MedgroundError):
    """medground refused to execute untrusted content (e.g. a pickle global)."""


class InternalError(MedgroundError, RuntimeError):
    """A bug in medground; please report it with the message."""


__all__ = [
    "MedgroundError",
    "InvalidArgumentError",
    "FormatError",
    "ShapeError",
    "DTypeError",
    "MedgroundIOError",
    "OutOfMemoryError",
    "NotFoundError",
    "UnsupportedError",
    "UnsafeError",
    "InternalError",
]
