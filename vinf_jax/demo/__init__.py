"""``tiny-demo``: a small VideoCrafter2-architecture model trained here on a synthetic world.

``world`` makes the videos (and detects the object in any frame), ``train`` trains the model from
scratch with optax, ``export`` writes it in the diffusers layout, ``model`` converts the shipped
weights with the same converter a user runs on real weights.
"""
