"""Diagnostics of one run's inputs: the exact contexts a document gets (:mod:`.show_prompt`) and the base model's
NLL of the demos (:mod:`.demo_nll`). May import the layers; writes nothing a later run reads."""
