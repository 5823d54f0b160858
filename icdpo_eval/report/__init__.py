"""The HTML report: the page (:mod:`.html`, its Jinja template in ``templates/``) and ``icdpo-eval report``
(:mod:`.pages`). Reads finished results only: never imports torch (a test checks it at run time)."""
