"""A run folder on disk, below every other layer: its file names, atomic writes, and the saved config.

`names` and `atomic` import nothing of the project but `enas.errors`, so that the data readers,
the tasks, the loops and the commands may all use them."""
