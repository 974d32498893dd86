"""Export of a chosen subnet: the folder and its model card (:mod:`.subnet`), and the ONNX conversion
and checks (:mod:`.onnx_export`), which the latency profiler also uses to time ONNX Runtime."""
