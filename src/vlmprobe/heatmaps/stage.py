"""The heatmaps stage: one (dataset, model, setting) job -> maps, overlay pages and scores; and the settings side by side.

A job selects images (:func:`vlmprobe.heatmaps.maps.select_images`), loads the setting's scorer
(:mod:`vlmprobe.heatmaps.settings`), asks the model family for the layer to attribute
(:func:`vlmprobe.heatmaps.maps.target_layer`), draws a map per (image, target), scores each map against
the image's boxes or mask (:mod:`vlmprobe.heatmaps.scores`) and writes the maps file
(:mod:`vlmprobe.formats.maps`), the overlay figures (:mod:`vlmprobe.heatmaps.figures`) and the scores table.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmprobe.formats.manifest import read_manifest
from vlmprobe.formats.maps import read_maps, write_maps
from vlmprobe.heatmaps import figures as map_figures
from vlmprobe.heatmaps import protocol as notebook
from vlmprobe.heatmaps import scores as map_scores
from vlmprobe.heatmaps.geometry import CROP_KEYS, centre_crop_box, input_geometry, map_at_image_size, place_map, to_input
from vlmprobe.heatmaps.maps import choose_targets, compute_maps, select_images, target_layer
from vlmprobe.heatmaps.scorers import scores_of
from vlmprobe.heatmaps.settings import SETTINGS, build_setting
from vlmprobe.images import load_image
from vlmprobe.io import save_figure, write_parquet
from vlmprobe.runtime import resolve_device

log = logging.getLogger(__name__)


def run_heatmaps(
    manifest_path,
    dataset: str,
    model_id: str,
    spec: dict[str, Any],
    setting: str,
    out_dir,
    scores_path,
    *,
    head_path: str | None = None,
    encoder_path: str | None = None,
    zero_shot: dict[str, Any] | None = None,
    method: str = "gradcam",
    layer_override: str | None = None,
    max_annotated: int = 24,
    n_random: int = 8,
    seed: int = 0,
    threshold: float = 0.5,
    threshold_rule: str = "relative_max",
    rows_per_page: int = 8,
    device: str = "auto",
    batch_size: int = 16,
    protocol: str = "vlmprobe",
):
    """One job: maps for the selected images of ``dataset`` under ``model_id`` in ``setting``.

    Writes ``out_dir/maps.npz`` (raw maps, :func:`vlmprobe.formats.maps.read_maps`), ``out_dir/overlays_NN.png``
    (grids of ``rows_per_page`` images) and ``scores_path`` (one row per map: pointing game, IoU, energy
    fraction and chance where the image has a box or mask for the label). Returns the scores table.

    ``protocol="sadman2025"`` draws as Sadman et al.'s notebook (:mod:`vlmprobe.heatmaps.protocol`): its 15 test
    images (pandas' ``sample(n=15, random_state=42)``), ``trunk.blocks[-3].attn.proj``, every class per image, the
    zero-shot raw dot product; the maps file's index adds the notebook's title probability per map.
    """
    import polars as pl

    started = time.perf_counter()
    device = resolve_device(device)
    table, manifest_info = read_manifest(manifest_path)
    paper = protocol == notebook.PROTOCOL
    rows = notebook_rows(table) if paper else select_images(table, max_annotated, n_random, seed)
    setting_model = build_setting(
        setting, model_id, spec, manifest_info.get("classes") or [], device, head_path, encoder_path, zero_shot, protocol
    )
    classes = setting_model.classes
    if paper and not layer_override:
        layer = notebook.notebook_layer(setting_model.encoder)
    else:
        layer = target_layer(setting_model.encoder, layer_override)
    geometry = input_geometry(setting_model.encoder)
    chosen_how = "the notebook's test_df.sample(n=15, random_state=42)" if paper else f"<= {max_annotated} annotated + {n_random} random test images"
    log.info("%s / %s / %s: %d images (%s), method %s on %s (%s)", dataset, model_id, setting, len(rows), chosen_how, method, layer.name, layer.rule)

    manifest = _manifest_columns(table)
    images = [np.asarray(load_image(manifest["path"][i])) for i in rows]
    if paper:  # the notebook's input: the model's own preprocessing (resize the short side, centre crop)
        inputs = torch.stack([setting_model.encoder.preprocess(_pil(image)) for image in images]) if rows else torch.zeros((0, 3, *geometry.size))
        crops = [centre_crop_box(*image.shape[:2]) for image in images]
    else:
        inputs = torch.stack([to_input(_pil(image), geometry) for image in images]) if rows else torch.zeros((0, 3, *geometry.size))
        crops = [None] * len(images)
    scores = scores_of(setting_model.scorer, inputs, batch_size, device)
    truths = [_label_indices(manifest["labels"][i], classes) for i in rows]
    if paper:
        targets = notebook.notebook_targets(truths, notebook.notebook_class_order(classes))
        probabilities = notebook.notebook_probabilities(setting, setting_model.scorer, inputs, batch_size, device)
    else:
        targets = choose_targets(scores, truths) if rows else []
    # one entry per map: (position of its image in `rows`, label index, 'true' / 'false_positive')
    flat = [(position, index, kind) for position, chosen in enumerate(targets) for index, kind in chosen]
    maps = compute_maps(
        setting_model.scorer, layer, inputs[[p for p, _, _ in flat]] if flat else inputs[:0], [t for _, t, _ in flat], method, batch_size, device
    )
    per_image = "every class" if paper else "their true labels + top false positive"
    log.info("%d maps (%d images x %s), %.1f s into the job", len(flat), len(rows), per_image, time.perf_counter() - started)

    identity = {"dataset": dataset, "model": model_id, "setting": setting, "method": method}
    shown = probabilities if paper else scores
    records, image_rows = _score_maps(identity, manifest, rows, images, classes, scores, flat, maps, threshold, threshold_rule, shown, crops)
    provenance = {
        **identity, "spec": spec,
        "target_layer": layer.name, "target_layer_rule": layer.rule, "reshape": repr(layer.reshape_transform),
        "input_size": list(geometry.size), "classes": classes, "seed": seed,
        "selection": (
            {"rule": "test_df.sample(n=15, random_state=42) (pandas)", "sample_ids": [manifest["sample_id"][i] for i in rows]}
            if paper
            else {"max_annotated": max_annotated, "n_random": n_random, "sample_ids": [manifest["sample_id"][i] for i in rows]}
        ),
        "threshold": {"rule": threshold_rule, "value": threshold}, "setting_info": setting_model.provenance,
        "device": device, "seconds": round(time.perf_counter() - started, 2),
        **(
            {"protocol": protocol, "title_probability": notebook.TITLE_PROBABILITY[setting == "zs"],
             "input": "the model's preprocessing (short side resized, centre crop), as the notebook; maps placed in their crop"}
            if paper else {}
        ),  # fmt: skip
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    index = _map_index(manifest, rows, images, classes, scores, flat)
    if paper:
        index["probability"] = [float(probabilities[p, t]) for p, t, _ in flat]
        index.update({key: [int(crops[p][k]) for p, _, _ in flat] for k, key in enumerate(CROP_KEYS)})
    write_maps(out_dir / "maps.npz", maps, index, provenance)
    title = f"{dataset} / {model_id} / {setting} ({method} on {layer.name})"
    for page, figure in enumerate(map_figures.overlay_pages(image_rows, title, rows_per_page), start=1):
        save_figure(out_dir / f"overlays_{page:02d}.png", figure)
    frame = pl.DataFrame(records, schema=map_scores.SCORE_SCHEMA)
    arrow = frame.to_arrow()
    arrow = arrow.replace_schema_metadata({b"vlmprobe": json.dumps(provenance, sort_keys=True, default=str)})
    write_parquet(scores_path, arrow)
    _log_summary(frame)
    return frame


def notebook_rows(table) -> list[int]:
    """Manifest rows of the notebook's 15 images: its ``test_df`` (the test rows in the label table's row order,
    :func:`vlmprobe.heatmaps.protocol.label_table_order`), drawn as pandas does."""
    test = [i for i, value in enumerate(table.column("split").to_pylist()) if value == "test"]
    rows = table.column("meta_source_row").to_pylist() if "meta_source_row" in table.column_names else None
    test = notebook.label_table_order(test, rows)
    return [test[i] for i in notebook.notebook_sample(len(test))]


def _manifest_columns(table) -> dict[str, list[Any]]:
    """The manifest columns a job reads, as lists over all rows (no boxes / masks: empty / None per row)."""
    n = table.num_rows
    return {
        "sample_id": table.column("sample_id").to_pylist(),
        "path": table.column("path").to_pylist(),
        "labels": table.column("labels").to_pylist(),
        "boxes": table.column("boxes").to_pylist() if "boxes" in table.column_names else [[] for _ in range(n)],
        "annotation_path": table.column("annotation_path").to_pylist() if "annotation_path" in table.column_names else [None] * n,
    }


def _map_index(manifest, rows, images, classes, scores, flat) -> dict[str, list[Any]]:
    """The maps file's index: per map its image, label, target kind, score and the image's size."""
    return {
        "sample_id": [manifest["sample_id"][rows[p]] for p, _, _ in flat], "label": [classes[t] for _, t, _ in flat],
        "target_kind": [k for _, _, k in flat], "score": [float(scores[p, t]) for p, t, _ in flat],
        "image_height": [images[p].shape[0] for p, _, _ in flat], "image_width": [images[p].shape[1] for p, _, _ in flat],
    }


def _score_maps(
    identity: dict[str, str],
    manifest: dict[str, list[Any]],
    rows: Sequence[int],
    images: Sequence[np.ndarray],
    classes: Sequence[str],
    scores: np.ndarray,
    flat: Sequence[tuple[int, int, str]],
    maps: np.ndarray,
    threshold: float,
    threshold_rule: str,
    shown: np.ndarray,
    crops: Sequence[tuple[int, int, int, int] | None],
) -> tuple[list[dict[str, Any]], list[Any]]:
    """Each map at its image's size, scored against the label's region where there is one: the rows of the
    scores table (``identity`` first) and the overlay rows (one per image, a panel per map, titled with ``shown``)."""
    records, image_rows = [], []
    for position, row in enumerate(rows):
        image = images[position]
        shape = image.shape[:2]
        boxes, labels = manifest["boxes"][row], manifest["labels"][row]
        panels = []
        for map_index, (p, label_index, kind) in enumerate(flat):
            if p != position:
                continue
            label = classes[label_index]
            cam = place_map(maps[map_index], shape, crops[position])
            region, source = map_scores.label_region(label, shape, boxes, manifest["annotation_path"][row], labels)
            score = map_scores.score_map(cam, region, threshold, threshold_rule) if region is not None else None
            records.append(
                {
                    **identity,
                    "sample_id": manifest["sample_id"][row], "label": label, "target_kind": kind,
                    "score": float(scores[position, label_index]), "map_index": map_index,
                    "has_region": region is not None, "region_source": source,
                    "area_fraction": score.area_fraction if score else None,
                    "pointing_game": score.pointing_game if score else None,
                    "iou": score.iou if score else None,
                    "energy_fraction": score.energy_fraction if score else None,
                    "flat": bool(cam.max() <= cam.min()),
                    "iou_chance": score.iou_chance if score else None,
                }
            )
            panels.append(
                map_figures.MapPanel(
                    label, kind, float(shown[position, label_index]), cam,
                    [b for b in boxes or [] if b["label"] == label],
                    score.pointing_game if score else None,
                )
            )
        image_rows.append(map_figures.ImageRow(manifest["sample_id"][row], image, list(labels), list(boxes or []), panels))
    return records, image_rows


def _log_summary(frame) -> None:
    summary = map_scores.summarise(frame, ["setting"])
    if summary.height:
        row = summary.row(0, named=True)
        log.info(
            "pointing game %.3f (chance %.3f), IoU %.3f, energy inside %.3f over %d scored maps",
            row["pointing_game"], row["chance"], row["iou"], row["energy_fraction"], row["n_maps"],
        )
    else:
        log.info("no selected image has a box or mask for its labels: nothing scored")


def _label_indices(labels: Sequence[str], classes: Sequence[str]) -> list[int]:
    index = {name: i for i, name in enumerate(classes)}
    return [index[name] for name in labels if name in index]


def _pil(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(array)


def write_settings_comparison(manifest_path, maps_dirs: dict[str, Any], out_path, dataset: str, model_id: str, n_rows: int = 6) -> int:
    """The paper's side-by-side figure: the same (image, true label) pairs in every setting that has maps.

    Rows are (image, label) pairs with an annotation that every given setting has a map for: one
    label per image first (manifest order), then the images' further labels, ``n_rows`` at most.
    Returns the number of rows drawn.
    """
    settings = [s for s in SETTINGS if s in maps_dirs] + sorted(set(maps_dirs) - set(SETTINGS))
    data = {setting: read_maps(Path(maps_dirs[setting]) / "maps.npz") for setting in settings}
    table, _ = read_manifest(manifest_path)
    by_id = {row["sample_id"]: row for row in table.select(["sample_id", "path", "labels", "boxes", "annotation_path"]).to_pylist()}

    def true_maps(d):
        keys = zip(d["sample_id"].tolist(), d["label"].tolist(), d["target_kind"].tolist(), strict=True)
        return {(sample_id, label): i for i, (sample_id, label, kind) in enumerate(keys) if kind == "true"}

    if any(d["provenance"].get("protocol") == notebook.PROTOCOL for d in data.values()):
        return _notebook_comparison(data, settings, by_id, out_path, dataset, model_id)
    indices = {setting: true_maps(data[setting]) for setting in settings}
    common = [key for key in indices[settings[0]] if all(key in indices[s] for s in settings)] if settings else []
    annotated = [(s, l) for s, l in common if s in by_id and (by_id[s]["boxes"] or by_id[s]["annotation_path"])]
    first_per_image, seen = [], set()
    for sample_id, label in annotated:
        if sample_id not in seen:
            first_per_image.append((sample_id, label))
            seen.add(sample_id)
    ordered = first_per_image + [pair for pair in annotated if pair not in first_per_image]
    rows = []
    for sample_id, label in ordered:
        if len(rows) >= n_rows:
            break
        record = by_id[sample_id]
        image = np.asarray(load_image(record["path"]))
        region, _ = map_scores.label_region(label, image.shape[:2], record["boxes"], record["annotation_path"], record["labels"])
        if region is None:  # e.g. 'normal': annotated image, but nothing marks this label
            continue
        maps = {setting: map_at_image_size(data[setting], indices[setting][(sample_id, label)]) for setting in settings}
        hits = {setting: map_scores.pointing_game(cam, region) for setting, cam in maps.items()}
        boxes = [box for box in record["boxes"] or [] if box["label"] == label]
        rows.append(map_figures.ComparisonRow(sample_id, image, label, boxes, maps, hits))
    method = ", ".join(sorted({str(d["provenance"].get("method")) for d in data.values()}))
    figure = map_figures.settings_comparison(rows, settings, f"{dataset} / {model_id}: the same images in each setting ({method})")
    save_figure(out_path, figure)
    return len(rows)


def _notebook_comparison(data: dict[str, Any], settings: Sequence[str], by_id: dict[str, Any], out_path, dataset: str, model_id: str) -> int:
    """Protocol sadman2025: the notebook's last figure, one image x every class (rows) x the settings (columns:
    Zero-Shot, Fine-Tuned, LinearProbe, as its ``settings`` list).

    The image is the notebook's ``filenames[2]`` (``1196_IM-0131-1001.dcm.png``) when it is among the sampled
    images, else the first of the sample; each panel's title carries the notebook's probability.
    """
    settings = sorted(settings, key=lambda s: notebook.FIGURE_COLUMNS.index(s) if s in notebook.FIGURE_COLUMNS else len(notebook.FIGURE_COLUMNS))
    first = data[settings[0]]
    sampled = list(dict.fromkeys(first["sample_id"].tolist()))
    named = [s for s in sampled if s in by_id and Path(str(by_id[s]["path"])).name == notebook.FIGURE_IMAGE]
    rows = []
    if sampled:
        sample_id = (named or sampled)[0]
        record = by_id[sample_id]
        image = np.asarray(load_image(record["path"]))
        labels = [label for s, label in zip(first["sample_id"].tolist(), first["label"].tolist(), strict=True) if s == sample_id]
        for label in labels:
            maps, notes = {}, {}
            for setting in settings:
                d = data[setting]
                where = [i for i, (s, l) in enumerate(zip(d["sample_id"].tolist(), d["label"].tolist(), strict=True)) if s == sample_id and l == label]
                maps[setting] = map_at_image_size(d, where[0]) if where else None
                if where and "probability" in d:
                    notes[setting] = f"P={float(d['probability'][where[0]]):.2f}"
            boxes = [box for box in record["boxes"] or [] if box["label"] == label]
            rows.append(map_figures.ComparisonRow(sample_id, image, label, boxes, maps, {}, notes))
    layer = ", ".join(sorted({str(d["provenance"].get("target_layer")) for d in data.values()}))
    figure = map_figures.settings_comparison(rows, settings, f"{dataset} / {model_id}: every class of one image in each setting (sadman2025, {layer})")
    save_figure(out_path, figure)
    return len(rows)
