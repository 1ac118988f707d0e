"""The book's CNN model plugin (placeholder until it lands)."""
