"""The SAM model (image encoder, prompt encoder, mask decoder), its builders and the prompted
predictor, as segment-anything keeps ``modeling/``. Imports only :mod:`infra`."""
