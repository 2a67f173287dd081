"""The commands beyond parsing: search, derive, retrain, and the measures of a search (rank, compare, the --seeds sweep)."""
