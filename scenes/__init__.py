"""Data readers shared by training and the evaluators: image folders, COCO instances and panoptic
annotations, generated synthetic scenes, and the augmented scene sources training draws from.
Imports only :mod:`infra`."""
