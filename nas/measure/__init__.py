"""Measurement tools: wall-clock timing with rounds and a steady allocator (:mod:`.timing`), and
where a measurement was taken (:mod:`.fingerprint`)."""
