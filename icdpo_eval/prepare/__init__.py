"""Tools that prepare inputs for later runs: a teacher's borrowed demos (:mod:`.borrow`) and the MRR rank sets
(:mod:`.rank_set`). May import the layers (they sample and judge with the method's own code)."""
