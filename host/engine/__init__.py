"""Our inference engine seen from the host: the firmware build for a board (`build`), the same C
built for this host (`native`), the TFLite Micro reference interpreter every output must equal
(`reference`), and the integer input pre-processing stage the firmware can run (`preprocess`,
with its NumPy twin in `integer`).

Imports: host.core, host.tflite, host.compiler.
"""
