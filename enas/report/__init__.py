"""What a run shows its users beyond metrics.jsonl: plots, the report page, the list of runs."""
