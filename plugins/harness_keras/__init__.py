"""Keras backend plugin (placeholder until it lands)."""
