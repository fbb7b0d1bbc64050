"""Fine-tuning methods shipped with Embedding Studio; others arrive through the entry-point group."""
