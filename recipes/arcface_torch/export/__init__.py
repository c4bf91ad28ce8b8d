"""Library code behind the ONNX tools: export, checks, verification, checkpoint reading, sample faces."""
