"""Oscillator networks (spec: docs/specs/harmonic_field.md): graphs, mode-space and Kuramoto dynamics in lax.scan,
the original experiment's metrics and sound ones, and the experiments behind configs/field.py.

Faithful: the original GPU experiment (its mode model, trial % 4 initial conditions, rotation angle, lag-correlation
"waves") reproduced exactly behind field.seed_faithful. Sound: Kuramoto synchrony, phase-gradient waves against
surrogates, correlation length, randomised initial conditions, nodes and timesteps varied separately.
"""
