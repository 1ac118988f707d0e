"""MNIST dataset plugin (placeholder until its loader lands)."""
