"""Evaluation as the papers' scripts compute it (BiRD, MedPLIB/LLaVA-Med,
pycocoevalcap, Meteor 1.5, NLTK), with the heavy work in C.

``evaluate(records_or_path, task=...)`` is the front door; ``metrics``
holds the single metrics (PTB tokenisation, BLEU/ROUGE-L/CIDEr-D, METEOR,
VQA, Dice/IoU, RLE, the SPICE bridge)."""

from __future__ import annotations

from . import metrics
from .core import AVERAGE_RULES, TASKS, EvalResult, evaluate
from .records import BIRD_MODALITIES, Finding, load_records, modality_of

__all__ = ["evaluate", "EvalResult", "Finding", "TASKS", "AVERAGE_RULES", "BIRD_MODALITIES", "load_records",
           "modality_of", "metrics"]
