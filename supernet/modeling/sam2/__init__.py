"""SAM 2 (2.0 and 2.1) image model in pure PyTorch: Hiera trunk, FPN neck, prompt encoder, mask decoder.

One module per part, as Meta's ``sam2.modeling``: ``arch.py`` (sizes, the registry), ``hiera.py``,
``neck.py``, ``prompt_encoder.py``, ``transformer.py``, ``mask_decoder.py``, ``model.py``
(:class:`Sam2`), ``build.py``, ``predictor.py``. No torchvision, timm, hydra or sam2 imports.
"""
