"""A run's life: its folder, its state schema and checkpoints, the session and its steps, progress, signals."""
