"""Longer studies (budget sweeps, plan time); each writes data (CSV) and a plot (PNG)."""
