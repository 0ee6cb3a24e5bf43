"""The serial link to a board running our firmware (docs/protocol.md): the wire frame, the message
list and payloads, the retransmitting client, a `Device` on top of it, the flashed images and how
they are put on a board (`flashing`, `probe` for real boards), and a byte-damaging proxy for tests.

Imports: host.core, host.compiler, host.engine.
"""
