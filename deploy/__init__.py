"""Run an exported subnet without PyTorch: numpy, pillow and ONNX Runtime or OpenVINO only.

``Runner.from_folder("my_subnet/")`` reads a ``samnas export`` folder (``card.json``,
``image_encoder.onnx``, ``prompt_decoder.onnx`` and, for OpenVINO devices, their IR) and answers
prompts (:meth:`Runner.predict`) or segments everything with a policy file (:meth:`Runner.everything`).
This package imports nothing from the rest of samnas and never imports torch.
"""
from .errors import DeployError
from .runner import Runner

__all__ = ["DeployError", "Runner"]
