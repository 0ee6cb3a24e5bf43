"""Where a quantized model runs: the TFLite Micro reference, the host-native engine or the device
(`backend`), a pool of devices with restarts on link loss (`pool`), and model checks against the
reference (`inputs`, `verify`).

Imports: host.core, host.tflite, host.compiler, host.engine, host.link, host.emulators.
"""
