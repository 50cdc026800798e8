"""confdistill.cli."""
