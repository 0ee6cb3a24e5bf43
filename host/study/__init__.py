"""Experiments: the TOML study config (`config`), the one runner of every evaluation (`runner`), its
work units (`units`), where they run (`cluster`: Dask, or this process), the run's journal
(`journal`), the flag run's view of a study (`evaluation`), robustness metrics (`metrics`) and the
gallery arrays (`gallery`).

Imports: every package below it (host.core … host.defenses); never host.reporting or a command.
"""
