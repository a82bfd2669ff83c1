"""Non-neural baselines that every transfer model must beat (the registry is :mod:`tfrec_xcat.recommender`)."""
