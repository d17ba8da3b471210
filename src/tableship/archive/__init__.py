"""archive layer."""
