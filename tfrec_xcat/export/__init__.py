"""SavedModels for TF Serving: three servables built from a trained run, stock TensorFlow ops only."""
