"""A thin question-answering layer over kgqa_kernels: KB loading, MetaQA questions, a Rigel-style
multi-hop model with intersection, training and evaluation (``kgqa`` on the command line).

Each name below is imported on first use (PEP 562), not with the package: they pull in torch,
which takes seconds to import, and `kgqa --help` or `kgqa --version` needs none of them."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

# name -> the module of this package that owns it
_EXPORTS = {
    "Answer": "answers",
    "Link": "answers",
    "ReadAs": "answers",
    "Response": "answers",
    "EvidencePath": "evidence",
    "Step": "evidence",
    "CheckpointError": "checkpoint_schema",
    "TrainConfig": "config",
    "KBFormatError": "kb",
    "KnowledgeBase": "kb",
    "RigelModel": "model",
    "QA": "qa",
    "Question": "questions",
    "QuestionFormatError": "questions",
    "read_questions": "questions",
    "train": "trainer",
}

__all__ = ["CheckpointError", "KnowledgeBase", "KBFormatError", "Question", "QuestionFormatError", "read_questions",
           "RigelModel", "QA", "TrainConfig", "train", "Answer", "EvidencePath", "Link", "ReadAs", "Response", "Step",
           "__version__"]


def __getattr__(name: str):
    if name == "__version__":
        from .distribution import version

        return version()
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value  # the next lookup is a plain attribute
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what static analysis and IDEs see
    from .answers import Answer, Link, ReadAs, Response
    from .checkpoint_schema import CheckpointError
    from .config import TrainConfig
    from .evidence import EvidencePath, Step
    from .kb import KBFormatError, KnowledgeBase
    from .model import RigelModel
    from .qa import QA
    from .questions import Question, QuestionFormatError, read_questions
    from .trainer import train
