"""The linear probe's positive class; its input checks are the core's (:mod:`vlmprobe.probe_inputs`)."""

from __future__ import annotations

from vlmprobe.errors import VlmprobeError


def positive_index(classes: list[str], positive_label: str | None) -> int | None:
    """Index of the positive class of a 2-class dataset (``positive_label``, else the second in sorted order);
    None for more classes."""
    if len(classes) != 2:
        if positive_label is not None:
            raise VlmprobeError(
                f"Linear probe: positive_label={positive_label!r} was given for a {len(classes)}-class dataset; "
                "it only applies to 2-class datasets (multi-class F-score is macro F1).",
                "drop positive_label for this dataset.",
            )
        return None
    if positive_label is None:
        return 1  # second label in sorted order, as sklearn's pos_label=1 after LabelEncoder
    if str(positive_label) not in classes:
        raise VlmprobeError(
            f"Linear probe: positive_label {positive_label!r} is not one of the classes {classes}.",
            "set positive_label to one of the dataset's class names.",
        )
    return classes.index(str(positive_label))
