"""The edits and their verification, on top of ``clinical``: report editors one file per kind
(``deletion``, ``insertion``, ``swap``, ``comparison``, ``inject``, ``llm``), the VQA answer editors
(``editors/vqa/``), and the text makers that detect, edit and re-check a response (``text_pairs`` for
reports, ``vqa_pairs`` for VQA). Minimal, span-local edits, each verified by re-extraction before it is
kept. Never imports ``pipeline``."""
