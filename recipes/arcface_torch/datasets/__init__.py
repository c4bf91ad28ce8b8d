"""Training and verification data for the arcface_torch recipe."""
