"""Utilities of POT's API samples."""
