"""Longer studies: ``python -m experiments.<name>`` (budget sweeps, plan time, planner
optimality); each writes data (CSV) and a plot (PNG)."""
