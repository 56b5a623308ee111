"""VQA answers in free text: read every place a response answers, and edit only there.

A VQA response is judged on its answer, so a pair's edits are the places that give it and nothing
else: the rest of the response keeps its wording byte for byte. Reading is conservative: an answer
that cannot be located with confidence is not read (``VqaReadError``; the caller rejects the
response with its reason), because a pair built on a misread answer teaches the wrong preference.

- ``words``: tokens, normal forms, known kinds of values; ``text``: sentences, clauses, writing values;
- ``gold``: the gold answer (yes/no, options, open; a sentence gold read for its answer);
- ``places`` / ``yes_no``: every yes/no place of a response, and stating one answer in all of them;
- ``open_read`` / ``open_edit``: open and choice answers, fixed or injected in the response's sentence;
- ``locations``: the chest anatomy an answer points at, for the image stage.
"""

from editors.vqa.gold import Gold, question_options
from editors.vqa.locations import answer_locations
from editors.vqa.open_edit import fix_open, inject_open
from editors.vqa.open_read import OpenReading, read_open
from editors.vqa.places import Place, YesNoReading, read_yes_no
from editors.vqa.text import language_of
from editors.vqa.words import EDITOR, ERROR_TYPE, VqaReadError, normalize_answer, same_answer, yes_no_of
from editors.vqa.yes_no import state_answer

__all__ = [
    "EDITOR", "ERROR_TYPE", "Gold", "OpenReading", "Place", "VqaReadError", "YesNoReading", "answer_locations",
    "fix_open", "inject_open", "language_of", "normalize_answer", "question_options", "read_open", "read_yes_no",
    "same_answer", "state_answer", "yes_no_of",
]
