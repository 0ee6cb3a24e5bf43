"""Experiments: the TOML study config (`config`), its runner (`runner`), the flag pipeline of
`python -m host.evaluate` (`evaluation`), robustness metrics (`metrics`), the per-inference results
store (`store`), study checkpoints (`checkpoint`) and the gallery arrays (`gallery`).

Imports: every package below it (host.core … host.defenses); never host.reporting or a command.
"""
