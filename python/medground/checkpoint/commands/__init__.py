"""Command modules for medground.cli (one per sub-command)."""
