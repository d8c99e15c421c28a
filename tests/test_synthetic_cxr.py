"""The synthetic-cxr generator: determinism, prevalence, boxes that cover the planted findings."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vlmprobe.datasets.synthetic_cxr import (
    DEFAULT_PREVALENCE,
    FINDINGS,
    NORMAL_LABEL,
    generate_synthetic_cxr,
    render_case,
    sample_case,
)
from vlmprobe.errors import VlmprobeError


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("scxr")
    return out_dir, generate_synthetic_cxr(out_dir, n_images=40, image_size=96, seed=3)


def test_records_and_files(generated):
    out_dir, records = generated
    assert [r["sample_id"] for r in records] == [f"scxr-{i:05d}" for i in range(40)]
    for record in records:
        with Image.open(record["path"]) as image:
            assert image.mode == "L" and image.size == (96, 96)
        assert record["path"].startswith(str(out_dir.resolve()))
        box_labels = sorted(box["label"] for box in record["boxes"])
        if box_labels:
            assert record["labels"] == box_labels  # one box per finding, labels sorted
            assert NORMAL_LABEL not in record["labels"]
        else:
            assert record["labels"] == [NORMAL_LABEL]
        for box in record["boxes"]:
            assert box["label"] in FINDINGS
            assert 0 <= box["x0"] < box["x1"] <= 96 and 0 <= box["y0"] < box["y1"] <= 96
            assert all(type(box[key]) is int for key in ("x0", "y0", "x1", "y1"))
    assert len(list(out_dir.glob("*.png"))) == 40


def test_same_seed_same_bytes_and_image_i_independent_of_n(generated, tmp_path):
    _, records = generated
    again = generate_synthetic_cxr(tmp_path / "again", n_images=40, image_size=96, seed=3)
    fewer = generate_synthetic_cxr(tmp_path / "fewer", n_images=7, image_size=96, seed=3)
    for first, second in zip(records, again, strict=True):
        assert open(first["path"], "rb").read() == open(second["path"], "rb").read()
        assert {k: v for k, v in first.items() if k != "path"} == {k: v for k, v in second.items() if k != "path"}
    for first, second in zip(records, fewer):
        assert open(first["path"], "rb").read() == open(second["path"], "rb").read()
        assert first["boxes"] == second["boxes"]
    other_seed = generate_synthetic_cxr(tmp_path / "other", n_images=3, image_size=96, seed=4)
    assert open(other_seed[0]["path"], "rb").read() != open(records[0]["path"], "rb").read()


def test_rerun_overwrites_and_removes_stale_images(tmp_path):
    generate_synthetic_cxr(tmp_path, n_images=5, image_size=64, seed=0)
    (tmp_path / "keep.txt").write_text("not ours")
    records = generate_synthetic_cxr(tmp_path, n_images=3, image_size=64, seed=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"] + [f"scxr-0000{i}.png" for i in range(3)]
    fresh = generate_synthetic_cxr(tmp_path / "fresh", n_images=3, image_size=64, seed=1)
    assert [open(r["path"], "rb").read() for r in records] == [open(r["path"], "rb").read() for r in fresh]


def test_prevalence_as_designed_on_1000_images():
    cases = [sample_case(0, index) for index in range(1000)]
    for name, rate in DEFAULT_PREVALENCE.items():
        observed = np.mean([name in case.labels for case in cases])
        # 4 binomial standard errors: fails for a wrong design, not by chance
        assert abs(observed - rate) < 4 * np.sqrt(rate * (1 - rate) / 1000) + 1e-9, (name, observed)
    normal = np.mean([case.labels == [NORMAL_LABEL] for case in cases])
    expected_normal = np.prod([1 - rate for rate in DEFAULT_PREVALENCE.values()])
    assert 0.33 < normal < 0.5 and abs(normal - expected_normal) < 0.06
    assert np.mean([len(case.findings) >= 2 for case in cases]) > 0.1  # multi-label, like IU-Xray
    rates = sorted(DEFAULT_PREVALENCE.values())
    assert rates[-1] / rates[0] >= 5  # strongly imbalanced


def test_prevalence_override_and_validation(tmp_path):
    only_nodules = [sample_case(0, i, prevalence={f: 0.0 for f in FINDINGS} | {"nodule": 1.0}) for i in range(20)]
    assert all(case.labels == ["nodule"] for case in only_nodules)
    # switching one finding off leaves the anatomy and the other findings of every image as they were
    base = sample_case(5, 11)
    without = sample_case(5, 11, prevalence={"opacity": 0.0})
    assert without.anatomy == base.anatomy
    assert [f for f in base.findings if f.label != "opacity"] == list(without.findings)
    with pytest.raises(VlmprobeError, match="consolidation"):
        generate_synthetic_cxr(tmp_path, n_images=2, prevalence={"consolidation": 0.1})
    with pytest.raises(VlmprobeError, match="outside"):
        generate_synthetic_cxr(tmp_path, n_images=2, prevalence={"nodule": 1.5})
    with pytest.raises(VlmprobeError, match="n_images"):
        generate_synthetic_cxr(tmp_path, n_images=0)
    assert not list(tmp_path.iterdir())  # nothing written before the arguments were checked


def _cases_with_each_finding(per_finding: int, image_size: int):
    """Cases of seed 0 until every finding was seen ``per_finding`` times."""
    seen = dict.fromkeys(FINDINGS, 0)
    index = 0
    while min(seen.values()) < per_finding:
        case = sample_case(0, index, image_size)
        if any(seen[f.label] < per_finding for f in case.findings):
            for finding in case.findings:
                seen[finding.label] += 1
            yield case
        index += 1


@pytest.mark.parametrize("image_size", [64, 128])
def test_each_finding_changes_pixels_inside_its_box(image_size):
    for case in _cases_with_each_finding(per_finding=6, image_size=image_size):
        rendered = render_case(case)
        assert [box.label for box in rendered.boxes] == [label for label in FINDINGS if label in case.labels]
        for finding, box in zip(sorted(case.findings, key=lambda f: FINDINGS.index(f.label)), rendered.boxes):
            assert finding.label == box.label
            others = [f for f in case.findings if f is not finding]
            without = render_case(case, others)
            # the other findings' boxes do not depend on whether this one is drawn
            assert [b for b in rendered.boxes if b.label != finding.label] == list(without.boxes)
            diff = np.abs(rendered.image.astype(np.int16) - without.image.astype(np.int16))
            inside = diff[box.y0 : box.y1, box.x0 : box.x1]
            assert inside.sum() >= 0.9 * diff.sum(), (case.index, finding.label)
            # visible: a clear mean change inside the box, and a box that is not mostly empty
            assert inside.mean() >= 3.0, (case.index, finding.label, inside.mean())
            assert (inside >= 3).mean() >= 0.12, (case.index, finding.label)
            # tight: changed pixels reach to within one pixel of every side of the box
            rows = np.flatnonzero((inside >= 2).any(axis=1))
            cols = np.flatnonzero((inside >= 2).any(axis=0))
            height, width = inside.shape
            assert max(rows[0], height - 1 - rows[-1], cols[0], width - 1 - cols[-1]) <= 1, (case.index, box)


def test_normal_render_has_no_boxes_and_findings_are_shaped_differently():
    areas: dict[str, list[int]] = {label: [] for label in FINDINGS}
    for case in _cases_with_each_finding(per_finding=8, image_size=128):
        assert render_case(case, []).boxes == ()
        for box in render_case(case).boxes:
            areas[box.label].append((box.x1 - box.x0) * (box.y1 - box.y0))
    median = {label: np.median(values) for label, values in areas.items()}
    # nodules are the small finding, hearts and pneumothoraces the large ones
    assert median["nodule"] < 0.4 * median["opacity"]
    assert median["opacity"] < median["cardiomegaly"]
    assert median["effusion"] < median["cardiomegaly"]
