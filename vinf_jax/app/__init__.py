"""The web front end: ``python -m vinf_jax.app`` (Gradio, extra ``[app]``).

``session`` holds what the app does without a page (launch config and limits, page values ->
validated config, one generation at a time on a pipeline kept loaded); ``page`` is the Gradio page.
Both call the same generation flow as the CLI (``vinf_jax.flow``).
"""
