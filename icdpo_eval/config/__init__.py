"""Configuration and its checks: every environment variable (:mod:`.settings`), every option declared once
(:mod:`.options`), the model-name vocabulary (:mod:`.names`), and the run's checks before any weights load
(:mod:`.preflight`, the one module here that may import the layers it checks)."""
