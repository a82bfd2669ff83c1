"""Offline batch scoring from the exported models (locally; pipelines/ has the Beam version)."""
