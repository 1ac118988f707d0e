"""CIFAR-10 dataset plugin (placeholder until its loader lands)."""
