"""What a run shows its users beyond metrics.jsonl: plots."""
