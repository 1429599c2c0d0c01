"""Evaluation: official detection metrics and submission files."""
