"""Runnable examples over Embedding Studio's public interfaces; they live in the repository, not the package."""
