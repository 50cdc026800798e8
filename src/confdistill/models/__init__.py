"""confdistill.models."""
