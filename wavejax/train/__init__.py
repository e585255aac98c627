"""Training: state, pure steps, optimizers, losses, checkpoints, the loop."""
