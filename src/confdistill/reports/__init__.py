"""confdistill.reports."""
