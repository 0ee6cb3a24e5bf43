"""Foundation of the host: errors with hints (`UserError`, `run_cli`), well-known paths, the name
registry and typed parameters shared by attacks and defenses, board files (`boards/<name>/board.toml`),
datasets that ship with packages or that the user points to, files written whole (several processes
build or cache the same file at once), and TensorFlow's quiet import.

Imports: the standard library, NumPy and tomllib only; nothing else from host.
"""
