"""Hyperparameter search with KerasTuner over the transfer model (objective: cold-start validation NDCG@10)."""
