"""The architecture search: its space and objective (:mod:`.run`), a search as ``samnas search`` runs it
(:mod:`.session`: plan, run, outcome), its samplers (:mod:`.samplers`), the one 2-D Pareto front and
hypervolume (:mod:`.hypervolume`), front queries over stored studies (:mod:`.pareto`), the front measured
on the device (:mod:`.verify`), and the pool front that benchmarks measure searches against
(:mod:`.pool_front`)."""
