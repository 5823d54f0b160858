"""Data: the HH transcript format and its released reading (:mod:`.hh`), preference-pair loaders and length
filters (:mod:`.datasets`), the embedded offline models (:mod:`.embedded`) and the vendored HH slices. Imports
``data/`` and the foundation (docs/architecture.md)."""
