"""logq."""
