"""confdistill.data."""
