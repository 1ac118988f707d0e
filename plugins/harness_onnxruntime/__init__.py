"""ONNX Runtime backend plugin (placeholder until it lands)."""
