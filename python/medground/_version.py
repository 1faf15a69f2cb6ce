"""The one place the version lives (setup.py and the C header agree; a test checks)."""

__version__ = "0.1.0"
