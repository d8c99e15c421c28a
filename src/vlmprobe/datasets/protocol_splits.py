"""Splits of the published protocols (``split: protocol:``), beside our stratified default (:mod:`splits`).

``sadman2025`` -- Sadman et al. (2025), notebook ``evaluatingBiomedClIP_IUXRAY.ipynb`` of
github.com/Nafiz95/BioVLM_Eval_CXR, cell "70-15-15 Split", exactly::

    uids = iuxray_df["uid"].unique()                       # order of first appearance in the label CSV
    train_uids, tmp_uids = train_test_split(uids, test_size=0.30, random_state=42, shuffle=True)
    val_uids, test_uids = train_test_split(tmp_uids, test_size=0.50, random_state=42, shuffle=True)

an *unstratified* split of report uids (every image of a report on one side), seed 42 whatever the
config's ``seed`` (the protocol fixes it). In the one manifest format the three parts become:
``split = test`` for the test uids, ``split = train`` with ``fold = 0`` for the validation uids and
``fold = 1`` for the training uids, so ``validation_fold: 0`` (the default) is the notebook's
validation set for early stopping.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from vlmprobe.datasets.records import Record
from vlmprobe.errors import VlmprobeError

log = logging.getLogger(__name__)

SPLIT_PROTOCOLS = ("vlmprobe", "sadman2025")
SADMAN_SEED = 42
SADMAN_HOLDOUT = 0.30
"""val + test share of the uids; the hold-out is then halved (``test_size=0.50``)."""
VALIDATION_FOLD, TRAINING_FOLD = 0, 1


def uid_split(uids_in_order: Sequence[str], seed: int = SADMAN_SEED) -> dict[str, str]:
    """uid -> 'train' / 'val' / 'test', the notebook's two ``train_test_split`` calls on the unique uids."""
    from sklearn.model_selection import train_test_split

    unique = np.asarray(list(dict.fromkeys(uids_in_order)), dtype=object)
    if len(unique) < 4:
        raise VlmprobeError(f"The 70/15/15 report split needs at least 4 report uids; there are {len(unique)}.", "add reports.")
    train, rest = train_test_split(unique, test_size=SADMAN_HOLDOUT, random_state=seed, shuffle=True)
    val, test = train_test_split(rest, test_size=0.50, random_state=seed, shuffle=True)
    return {**{u: "train" for u in train}, **{u: "val" for u in val}, **{u: "test" for u in test}}


def protocol_split(dataset: str, records: Sequence[Record], protocol: str) -> tuple[list[str], list[int | None], dict[str, int]]:
    """``split`` and ``fold`` per record (in the records' order) and the part sizes, for a paper protocol."""
    if protocol != "sadman2025":
        raise VlmprobeError(f"Unknown split protocol {protocol!r}.", f"set `split: protocol:` to one of {list(SPLIT_PROTOCOLS)}.")
    missing = [record.sample_id for record in records if not record.meta.get("uid")]
    if missing:
        raise VlmprobeError(
            f"Dataset {dataset!r}: `split: protocol: sadman2025` splits by report uid, but sample(s) {missing[:5]} have no `uid`.",
            "use a dataset kind that records the report uid (iu-xray), or the default `split: protocol: vlmprobe`.",
        )
    order = sorted(range(len(records)), key=lambda i: (int(records[i].meta.get("source_row", i)), i))
    part_of = uid_split([records[i].meta["uid"] for i in order])
    split, fold = [], []
    for record in records:
        part = part_of[record.meta["uid"]]
        split.append("test" if part == "test" else "train")
        fold.append(None if part == "test" else VALIDATION_FOLD if part == "val" else TRAINING_FOLD)
    sizes = {name: sum(part_of[r.meta["uid"]] == name for r in records) for name in ("train", "val", "test")}
    log.info("dataset %s: report split 70/15/15 (seed %d): %s images", dataset, SADMAN_SEED, sizes)
    return split, fold, sizes
