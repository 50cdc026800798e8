"""confdistill.distillation."""
