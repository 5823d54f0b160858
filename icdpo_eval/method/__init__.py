"""What ICDPO is: templates (:mod:`.prompts`) and their instruction lines (:mod:`.instructions`), demo pools and
retrieval, the one scorer combinator (:mod:`.scorers`), generate-then-select (:mod:`.best_of_n`) and teachers.
Imports ``engine/``, ``data/`` and the foundation."""
