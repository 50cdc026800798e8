"""confdistill.experiments."""
