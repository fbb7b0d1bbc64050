"""Tasks: the task table, the procrastinate queue, and the workers that run fine-tuning, reindex and upserts."""
