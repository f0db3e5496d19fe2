"""Actor placement: where each actor lives, and the fence that keeps it in one place."""
