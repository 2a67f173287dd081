"""How a search searches: the controller and the search strategies."""
