"""Read .tflite flatbuffers: the model graph, tensors, quantization parameters and buffers
(no TensorFlow needed). Imports: host.core only."""
