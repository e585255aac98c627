"""wavejax: physics-inspired sequence models and oscillator-network simulations in JAX/Flax."""

__version__ = "0.1.0"
