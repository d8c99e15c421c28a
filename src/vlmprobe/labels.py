"""Label vocabularies shared by dataset adapters and analyses (core: imports nothing of ours)."""

from __future__ import annotations

CHEXPERT_CLASSES = (
    "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia",
    "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices", "No Finding",
)
"""The 14 CheXpert classes in CheXpert's column order (the order of Sadman et al.'s notebook)."""
