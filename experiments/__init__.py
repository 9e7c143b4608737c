"""Longer studies: python -m experiments.<name>."""
