"""Datasets: readers and writers of the raw formats, conversion, and loading for training."""
