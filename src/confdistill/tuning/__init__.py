"""confdistill.tuning."""
