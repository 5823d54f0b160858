"""Data: the HH transcript format (:mod:`.hh`), preference-pair loaders and length filters (:mod:`.datasets`),
the embedded offline models (:mod:`.embedded`) and the vendored HH slices. Imports nothing outside ``data/``."""
