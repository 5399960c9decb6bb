"""Plans on the task engine: runs, their scheduling, and the delivery job kind."""
