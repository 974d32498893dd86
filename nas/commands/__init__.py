"""Command modules over all of nas: ``search`` and ``pareto`` (:mod:`.search`), ``export`` (:mod:`.export`),
``evaluate`` (:mod:`.evaluate`) and ``train-reference`` (:mod:`.train_reference`)."""
