"""A stand-in for TF Serving on machines without it: the same REST and gRPC API over the same SavedModels."""
