"""Training side of BalancedBio: models, synthetic data, rewards, GRPO, evaluation, export."""
