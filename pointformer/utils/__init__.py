"""Utilities that are not ops or structures (benchmark helpers, ...)."""
