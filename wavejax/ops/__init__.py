"""Pure math in plain jnp, below both the models and the kernels: the phase layer's Kuramoto dynamics (phase), the
Wave-Native attentions (wave_attention), wave-selective attention (selective) and the oscillator-network dynamics
(oscillators). Each kernel in pallas_kernels/ is tested against its reference here."""
