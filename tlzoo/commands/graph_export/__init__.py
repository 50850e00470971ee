"""Graph exports (``tl export --format onnx|torchscript``): tracing, and the ONNX export of fused runs.

``tracing`` turns a backbone's batch into graph inputs, traces a module to ONNX or TorchScript
(one line naming ``--format folder`` when it cannot) and runs an ONNX graph with onnxruntime;
``fused`` exports a fused run as one ONNX graph per input's backbone plus the fusion graph.
"""
