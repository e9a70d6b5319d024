"""A thin question-answering layer over kgqa_kernels: KB loading, MetaQA questions, a Rigel-style
multi-hop model with intersection, training and evaluation (``kgqa`` on the command line)."""
from .answers import Answer, Link, Response
from .checkpoint_schema import CheckpointError
from .config import TrainConfig
from .evidence import EvidencePath, Step
from .kb import KBFormatError, KnowledgeBase
from .model import RigelModel
from .qa import QA
from .questions import Question, QuestionFormatError, read_questions
from .trainer import train

__all__ = ["CheckpointError", "KnowledgeBase", "KBFormatError", "Question", "QuestionFormatError", "read_questions",
           "RigelModel", "QA", "TrainConfig", "train", "Answer", "EvidencePath", "Link", "Response", "Step"]
