"""What a search trains on: text corpora and image sets, read from disk or generated."""
