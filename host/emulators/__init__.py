"""Emulated boards: QEMU and Renode processes, and `launch`, the one table keyed by the board file's
`[emulator] kind` that boots an ELF, plus `open_device` (the flashed board: emulated, or real over
its link).

Imports: host.core, host.engine, host.link.
"""
