"""confdistill.properties."""
