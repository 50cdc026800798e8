"""confdistill.prediction."""
