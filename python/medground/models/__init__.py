"""Model front-ends (thin Python over medground._C)."""

from .bird import BiRD, Box, parse_boxes  # noqa: E402,F401
