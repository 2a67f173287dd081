"""The commands that follow a search: derive and retrain."""
