"""Layer 1, config: every field declared once, sweep files read into a frozen SweepConfig, the
expressions a sweep file may hold. No JAX: what a sweep is can be read without starting it."""
