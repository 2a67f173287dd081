"""How a search searches: the controller and the search strategies.

enas and nas_rl learn a controller; random_ws and random are their baselines, with a controller
frozen at the uniform policy (every option equally likely): random search with weight sharing
(Li & Talwalkar 2019) and random search with every child trained from scratch.
"""

WITH_SUPERNET = ("enas", "random_ws")    # architectures are scored through shared weights
FROM_SCRATCH = ("nas_rl", "random")      # every child is trained from scratch, one trial each
UNIFORM = ("random_ws", "random")        # the controller stays at the uniform policy
