"""Export of a chosen subnet: the folder and its model card (:mod:`.subnet`), and the ONNX conversion
and checks of SAM's (:mod:`.onnx_export`) and SAM 2's (:mod:`.sam2_onnx`) graphs, which latency timing
also uses (profiling on ONNX Runtime, fresh-process validation of an exported encoder)."""
