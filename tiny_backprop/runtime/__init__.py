"""The eager runtime: recompute regions applied around the model's own module calls."""
