"""Command modules over all of nas: ``search``, ``pareto`` and ``export`` (:mod:`.search`),
``evaluate`` (:mod:`.evaluate`) and ``train-reference`` (:mod:`.train_reference`)."""
