"""Looking at a finished run: ``build-pairs report`` (the HTML page), ``gallery`` (PNG strips) and
``eval`` (the quality figures, with the independent checkers they use). Never imports ``pipeline``."""
