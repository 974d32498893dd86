"""Project-wide infrastructure: user errors, atomic file I/O, the results root, tracking URIs and
shared argument types. Nothing model-specific lives here; every other package may import it."""
