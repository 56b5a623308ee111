"""Reading a report: tokens, the lexicon, the rule extractor with its negation and uncertainty scope,
the RadGraph adapter (``clinical.extract``), findings, GREEN-typed error detection, the fluency checker
and pair metrics. Imports nothing of ours but ``schemas``."""
