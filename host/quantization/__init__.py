"""Every precision of a float model: int8 and int16x8 post-training quantization with the TFLite
converter, cached (`quantize`), and simulated low bit-widths (`bitwidth`).

Imports: host.core, host.tflite, host.compiler, host.engine, host.backends; TensorFlow inside
functions only.
"""
