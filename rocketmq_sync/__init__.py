"""Placeholder: the driver lands with the producer issue."""
