"""The job plan (vlmprobe.plan) without Snakemake: job lists, targets, skip reasons, the params each job gets
(kept exactly as the rules passed them before the plan existed, so cached results stay valid), the config
cross-checks reported together, and a new model family getting its jobs from its declared capabilities alone."""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from support import PIXELS, REPO, TINY_VIT
from support.plans import SCHEMA, plan_of, validated, wildcards

from vlmprobe.config_check import check_config
from vlmprobe.errors import VlmprobeError
from vlmprobe.models.base import FAMILIES, NO_TEXT_TOWER, ModelFamily, register_family
from vlmprobe.plan import PATHS, Plan, path

RESNET = {"family": "timm", "name": "resnet18", "pretrained": False, "image_size": 64}
CXR = {"kind": "synthetic-cxr", "n_images": 600, "image_size": 64}


@pytest.fixture
def shipped() -> Plan:
    return Plan(validated(yaml.safe_load((REPO / "config.yaml").read_text())))


# -- job lists, targets and skip reasons ---------------------------------------------------------------


def test_datasets_are_routed_by_kind_and_group(shipped):
    assert shipped.multiclass_datasets == ["digits", "synthetic-cxr-patients"]
    assert shipped.multilabel_datasets == ["synthetic-cxr"]
    assert shipped.grouped_datasets == ["synthetic-cxr-patients"]
    assert shipped.study_datasets == ["synthetic-cxr"]
    assert shipped.nuisances == {"synthetic-cxr": ["meta_marker"], "synthetic-cxr-patients": ["meta_marker"]}
    assert shipped.shortcut_datasets == ["synthetic-cxr", "synthetic-cxr-patients"]
    assert shipped.probes.datasets == shipped.multiclass_datasets


def test_the_study_runs_what_each_family_declares(shipped):
    assert shipped.finetune_models == ["vit-tiny"]
    assert shipped.study_jobs() == [
        ("synthetic-cxr", "pixels", "lp"),
        ("synthetic-cxr", "vit-tiny", "zs"),
        ("synthetic-cxr", "vit-tiny", "lp"),
        ("synthetic-cxr", "vit-tiny", "ft"),
        ("synthetic-cxr", "resnet18", "lp"),
    ]
    reasons = {(entry["model"], entry["setting"]): entry["reason"] for entry in shipped.multilabel_skipped()}
    assert reasons == {
        ("pixels", "zs"): NO_TEXT_TOWER,
        ("pixels", "ft"): "family 'pixels' has no trainable image tower",
        ("resnet18", "zs"): NO_TEXT_TOWER,
        ("resnet18", "ft"): "not listed in `multilabel: finetune: models`",
    }
    assert all(entry["protocol"] == "vlmprobe" for entry in shipped.multilabel_skipped())


def test_a_disabled_setting_says_so():
    plan = plan_of({"cxr": CXR}, {"vit": TINY_VIT}, multilabel={"zero_shot": {"enabled": False}})
    assert plan.setting_skip_reason("vit", "zs") == "`multilabel: zero_shot: enabled: false`"
    assert [s for _, _, s in plan.study_jobs()] == ["lp", "ft"]


def test_heatmap_jobs_follow_the_study_and_the_families_layers(shipped):
    assert shipped.heatmap_models == ["vit-tiny"]
    assert shipped.heatmap_jobs == [("synthetic-cxr", "vit-tiny", s) for s in ("zs", "lp", "ft")]
    assert shipped.heatmap_skip_reason("pixels", "lp") == "family 'pixels' has no layers to attribute"
    assert shipped.heatmap_skip_reason("resnet18", "lp") == "not listed in `heatmaps: models`"
    # by default every model with layers is mapped: pixels is not
    plan = plan_of({"cxr": CXR}, {"pixels": PIXELS, "vit": TINY_VIT, "resnet": RESNET})
    assert plan.heatmap_models == ["vit", "resnet"]
    assert [(m, s) for _, m, s in plan.heatmap_jobs] == [("vit", "zs"), ("vit", "lp"), ("vit", "ft"), ("resnet", "lp"), ("resnet", "ft")]


def test_the_shipped_targets(shipped):
    targets = shipped.all_targets()
    assert len(targets) == len(set(targets))
    assert "results/manifests/synthetic-cxr-patients.groups.parquet" in targets
    assert path("embedding", dataset="digits", model="resnet18") in targets
    assert "results/heatmaps/synthetic-cxr/vit-tiny/settings_comparison.png" in targets
    assert "results/summary/linear_probe_group_gap.png" in targets
    assert "results/nuisance/synthetic-cxr/vit-tiny_umap_meta_marker.png" in targets
    assert {"results/summary/multilabel.md", "results/summary/compare_multilabel.png", "results/summary/shortcut_curve.png"} <= set(targets)
    assert not [t for t in targets if "reference" in t]  # no reference block in the default config
    assert shipped.linear_probe_results() == [path("linear_probe", dataset=d, model=m) for d in shipped.multiclass_datasets for m in shipped.models]


def test_switched_off_stages_have_no_targets():
    plan = plan_of(
        {"cxr": CXR},
        {"pixels": PIXELS},
        umap={"enabled": False},
        multilabel={"enabled": False},
        nuisance={"enabled": False},
        compare={"enabled": False},
    )
    assert plan.study_datasets == [] and plan.heatmap_jobs == []
    assert plan.all_targets() == ["results/embeddings/cxr/pixels.parquet"]


def test_explore_pages_per_umap_table_thumbnails_per_dataset_and_probe_colouring_where_the_probe_runs(shipped):
    targets = shipped.all_targets()
    pages = [path("explore_page", dataset=d, model=m) for d in shipped.datasets for m in shipped.models]
    assert set(pages) | {"results/explore/index.html"} <= set(targets)
    assert [entry["page"] for entry in shipped.explore.index_entries()] == pages
    inputs = shipped.explore.page_inputs(wildcards(dataset="digits", model="pixels"))
    assert inputs["thumbnails"] == "results/explore/digits/thumbnails"  # no {model}: one set per dataset
    assert inputs["predictions"] == "results/linear_probe/digits/pixels.predictions.parquet"
    multilabel = shipped.explore.page_inputs(wildcards(dataset="synthetic-cxr", model="pixels"))
    assert multilabel["predictions"] == "results/multilabel/synthetic-cxr/pixels/lp.predictions.parquet"  # the study's lp
    off = plan_of({"cxr": CXR}, {"pixels": PIXELS}, multilabel={"linear_probe": {"enabled": False}})
    assert "predictions" not in off.explore.page_inputs(wildcards(dataset="cxr", model="pixels"))
    params = shipped.explore.page_params(wildcards(dataset="synthetic-cxr-patients", model="pixels"))
    assert params["group"] == "meta_patient" and params["cell"] == {"n_neighbors": 15, "min_dist": 0.1}
    assert shipped.explore.page_params(wildcards(dataset="synthetic-cxr", model="pixels"))["nuisances"] == ["meta_marker"]
    assert not [t for t in plan_of({"cxr": CXR}, {"pixels": PIXELS}, explore={"enabled": False}).all_targets() if "explore" in t]


def test_paths_fill_the_wildcards_they_are_given():
    assert path("multilabel_predictions", setting="lp") == "results/multilabel/{dataset}/{model}/lp.predictions.parquet"
    assert path("manifest", dataset="a") == "results/manifests/a.parquet"
    assert path("embedding") == PATHS["embedding"]


# -- params: the values the rules passed before the plan existed -----------------------------------------


def test_manifest_params_leave_the_default_protocol_out():
    plan = plan_of({"pts": {**CXR, "multilabel": False, "group": "meta_patient"}}, {"pixels": PIXELS})
    assert plan.split_params == {"test_fraction": 0.2, "n_folds": 5}
    assert plan.manifest_spec(wildcards(dataset="pts")) == {**CXR, "multilabel": False}
    assert plan.dataset_dir(wildcards(dataset="pts")) == "results/datasets/pts"
    assert plan.group_column(wildcards(dataset="pts")) == "meta_patient"
    assert plan.group_split_input(wildcards(dataset="pts")) == "results/manifests/pts.groups.parquet"
    paper = plan_of({"pts": CXR}, {"pixels": PIXELS}, split={"protocol": "sadman2025"})
    assert paper.split_params == {"test_fraction": 0.2, "n_folds": 5, "protocol": "sadman2025"}
    assert paper.group_split_input(wildcards(dataset="pts")) == []


def test_linear_probe_positive_label_carries_fscore_only_where_set():
    binary = {"kind": "imagefolder", "root": "data/x"}
    plan = plan_of({"a": binary, "b": {**binary, "positive_label": "sick"}, "c": {**binary, "positive_label": "sick", "fscore": "macro"}}, {"pixels": PIXELS})
    assert plan.positive_label(wildcards(dataset="a")) is None
    assert plan.positive_label(wildcards(dataset="b")) == "sick"
    assert plan.positive_label(wildcards(dataset="c")) == {"positive_label": "sick", "fscore": "macro"}


def test_study_params_leave_runtime_keys_and_the_default_protocol_out():
    plan = plan_of({"cxr": CXR}, {"vit": TINY_VIT})
    assert plan.protocol_params == {}
    assert plan.multilabel_lp_settings == {"C": [0.01, 0.1, 1.0], "threshold": "tuned"}
    assert plan.finetune_settings == {
        "epochs": 10,
        "patience": 3,
        "batch_size": 32,
        "lr": 1.0e-4,
        "head_lr": 1.0e-3,
        "weight_decay": 0.01,
        "image_size": None,
        "validation_fold": 0,
        "monitor": "average_precision",
        "threshold": "tuned",
    }
    assert plan.zero_shot_decision == {"rule": "sigmoid", "threshold": 0.5}
    assert plan.bootstrap == {"n_resamples": 1000, "confidence": 0.95, "seed": 0}
    w = wildcards(dataset="cxr", model="vit", setting="ft")
    assert plan.metrics_embeddings(w) == "results/finetune/cxr/vit/embeddings.parquet"
    assert plan.metrics_expected_spec(w) is None
    w = wildcards(dataset="cxr", model="vit", setting="lp")
    assert plan.metrics_embeddings(w) == "results/embeddings/cxr/vit.parquet"
    assert plan.metrics_expected_spec(w) == {**TINY_VIT, "precision": "auto"}


def test_a_paper_protocol_travels_in_the_study_params():
    plan = plan_of({"cxr": CXR}, {"vit": TINY_VIT}, multilabel={"protocol": "sadman2025", "finetune": {"validation_fold": 1}})
    expected = {"protocol": "sadman2025", "validation_fold": 1}
    assert plan.protocol_params == expected
    assert plan.zero_shot_decision == {"rule": "sigmoid", "threshold": 0.5, **expected}
    assert plan.multilabel_lp_settings == {"C": [0.01, 0.1, 1.0], "threshold": "tuned", **expected}
    assert plan.finetune_settings["protocol"] == "sadman2025"


def test_prompts_and_heatmap_params(shipped):
    zs = wildcards(dataset="synthetic-cxr", model="vit-tiny", setting="zs")
    prompts = shipped.zero_shot_prompts(zs)
    assert prompts["templates"][0] == "a chest X-ray showing {label}." and prompts["label_text"] == {"normal": "no abnormality"}
    assert shipped.heatmap_zero_shot(zs) == prompts
    assert shipped.heatmap_zero_shot(wildcards(dataset="synthetic-cxr", model="vit-tiny", setting="lp")) is None
    assert shipped.heatmap_options(zs) == {
        "method": "gradcam",
        "target_layer": None,
        "max_annotated": 6,
        "n_random": 2,
        "iou_threshold": 0.5,
        "threshold_rule": "relative_max",
    }
    ft = wildcards(dataset="synthetic-cxr", model="vit-tiny", setting="ft")
    assert shipped.heatmap_inputs(ft) == {
        "manifest": "results/manifests/synthetic-cxr.parquet",
        "check": "results/checks/models/vit-tiny.json",
        "weights": [],
        "encoder": "results/finetune/synthetic-cxr/vit-tiny/encoder.safetensors",
        "head": "results/finetune/synthetic-cxr/vit-tiny/head.safetensors",
    }
    assert shipped.comparison_settings(ft) == ["zs", "lp", "ft"]
    assert shipped.comparison_maps(ft)[0] == "results/heatmaps/synthetic-cxr/vit-tiny/zs"


def test_model_input_files_are_the_family_s(tmp_path):
    folder = tmp_path / "clip"
    plan = plan_of(
        {"cxr": CXR},
        {"pixels": PIXELS, "local": {"family": "open_clip", "name": f"local-dir:{folder}"}, "ckpt": {**RESNET, "pretrained": "weights/r18.pt"}},
    )
    assert plan.model_input_files(wildcards(model="pixels")) == []
    assert plan.model_input_files(wildcards(model="local")) == [str(folder / "open_clip_config.json")]
    assert plan.model_input_files(wildcards(model="ckpt")) == ["weights/r18.pt"]


def test_compare_and_reference_params():
    plan = plan_of({"digits": {"kind": "digits"}}, {"pixels": PIXELS, "resnet": RESNET})
    assert plan.compare_settings == {"n_resamples": 1000, "n_permutations": 10000, "confidence": 0.95, "alpha": 0.05, "seed": 0}
    entries = plan.compare_linear_probe_entries()
    assert [(e["dataset"], e["model"]) for e in entries] == [("digits", "pixels"), ("digits", "resnet")]
    assert plan.entry_files(entries)[:2] == ["results/linear_probe/digits/pixels.predictions.parquet", "results/linear_probe/digits/pixels.json"]
    assert plan.compare_multilabel_entries() == []
    assert plan.reference_multilabel_input() == [] and plan.reference_missing_reason() is None
    block = {"table": "t", "ours": "summary_multilabel", "metrics": {}}
    plan = plan_of({"digits": {"kind": "digits"}}, {"pixels": PIXELS}, reference={"multilabel": block})
    assert plan.reference_multilabel_input() == ["results/summary/multilabel.parquet"]
    assert plan.reference_missing_reason() == "not run: no result in our summary"
    plan = plan_of({"digits": {"kind": "digits"}}, {"pixels": PIXELS}, reference={"multilabel": {**block, "ours": "nope"}})
    assert plan.reference_multilabel_input() == []
    assert plan.reference_missing_reason() == "not run: the workflow has no 'nope' summary"


def test_resources_grow_with_the_dataset_and_the_attempt():
    plan = plan_of({"cxr": CXR, "digits": {"kind": "digits"}}, {"pixels": PIXELS}, heatmaps={"method": "scorecam", "gpu": True})
    cxr, no_manifest = wildcards(dataset="cxr"), {}
    assert plan.resources.gpu_mem_mb(cxr, no_manifest, 1) == 4096 + 24
    assert plan.resources.gpu_mem_mb(cxr, no_manifest, 2) == 2 * (4096 + 24)
    assert plan.resources.cpu_runtime_min(wildcards(dataset="digits"), no_manifest, 1) == 10 + 40  # 20,000 images guessed
    assert plan.resources.finetune_runtime_min(cxr, no_manifest, 1) == 30 + 3
    assert plan.resources.heatmap_gpu == 1
    assert plan.resources.heatmap_runtime_min(cxr, 1) == int(15 + 32 * 2.0)


def test_the_rule_files_name_only_what_the_plan_has(shipped):
    names = set()
    for rule_file in [REPO / "Snakefile", *(REPO / "workflow" / "rules").glob("*.smk")]:
        names |= set(re.findall(r"\bplan\.(\w+(?:\.\w+)?)", rule_file.read_text()))
    assert names, "no rule file uses the plan"
    for name in sorted(names):
        target = shipped
        for part in name.split("."):
            assert hasattr(target, part), f"the rule files use plan.{name}, which the plan lacks"
            target = getattr(target, part)


# -- cross-checks: every problem together --------------------------------------------------------------


def test_every_cross_check_problem_is_reported_together():
    config = {
        "datasets": {"digits": {"kind": "digits", "shortcut": {"finding": "opacity", "rate": 0.7}}, "cxr": CXR},
        "models": {"pixels": PIXELS, "vit": TINY_VIT},
        "multilabel": {"datasets": ["cxr", "nope-data"], "finetune": {"models": ["pixels", "ghost"]}},
        "heatmaps": {"datasets": ["nowhere"], "models": ["pixels", "phantom"], "target_layers": {"spectre": "layer3"}},
    }
    with pytest.raises(VlmprobeError) as error:
        check_config(config, SCHEMA)
    text = str(error.value)
    expected = [
        "`datasets: digits: shortcut` is set, but only kind synthetic-cxr draws a shortcut marker.",
        "`multilabel: datasets` names dataset ['nope-data'] that config.yaml does not define.",
        "`multilabel: finetune: models` names model ['ghost'] that config.yaml does not define.",
        "`multilabel: finetune: models` lists 'pixels', whose family 'pixels' has no trainable image tower.",
        "fine-tune only conch, cxr_clip, flair, open_clip, timm or torchvision models.",
        "`heatmaps: datasets` names dataset(s) ['nowhere'] that config.yaml does not define.",
        "`heatmaps: models` names model(s) ['phantom'] that config.yaml does not define.",
        "`heatmaps: models` lists 'pixels', whose family 'pixels' has no layers to attribute.",
        "`heatmaps: target_layers` names model(s) ['spectre'] that config.yaml does not define.",
    ]
    for line in expected:
        assert line in text, text
    assert "8 problem(s)" in text and "nothing was run" in text


def test_schema_and_cross_check_problems_come_together():
    config = {"datasets": {"digits": {"kind": "digits"}}, "models": {"pixels": PIXELS}, "seed": -1, "heatmaps": {"models": ["ghost"]}}
    with pytest.raises(VlmprobeError) as error:
        check_config(config, SCHEMA)
    text = str(error.value)
    assert "2 problem(s)" in text and "config key `seed`" in text and "['ghost']" in text


def test_an_unknown_family_is_a_config_problem():
    with pytest.raises(VlmprobeError, match=r"unknown family 'tensorflow'"):
        check_config({"datasets": {"digits": {"kind": "digits"}}, "models": {"tf": {"family": "tensorflow", "name": "x"}}}, SCHEMA)


def test_a_plan_refuses_a_config_that_fails_its_cross_checks():
    config = validated({"datasets": {"digits": {"kind": "digits"}}, "models": {"pixels": PIXELS}})
    config["multilabel"]["datasets"] = ["ghost"]
    with pytest.raises(VlmprobeError, match="ghost"):
        Plan(config)


def test_checking_leaves_the_config_alone():
    config = {"datasets": {"digits": {"kind": "digits"}}, "models": {"pixels": PIXELS}}
    before = copy.deepcopy(config)
    check_config(config, SCHEMA)
    assert config == before


# -- adding a family is one file ------------------------------------------------------------------------


@pytest.fixture
def toy_families():
    """Two families a new file could add: one declaring every capability, one declaring none."""

    @register_family
    class ToyFamily(ModelFamily):
        name = "toy-full"
        has_text_tower = True
        trainable = True
        has_layers = True

        def check(self, model_id, spec):
            pass

    @register_family
    class BareFamily(ModelFamily):
        name = "toy-bare"
        has_text_tower = False
        trainable = False
        has_layers = False

        def check(self, model_id, spec):
            pass

    try:
        yield
    finally:
        FAMILIES.pop("toy-full", None)
        FAMILIES.pop("toy-bare", None)


def test_a_new_family_gets_its_jobs_from_its_declared_capabilities(toy_families):
    plan = plan_of({"cxr": CXR}, {"full": {"family": "toy-full", "name": "f"}, "bare": {"family": "toy-bare", "name": "b"}})
    assert plan.finetune_models == ["full"]
    assert plan.study_jobs() == [("cxr", "full", "zs"), ("cxr", "full", "lp"), ("cxr", "full", "ft"), ("cxr", "bare", "lp")]
    assert plan.heatmap_models == ["full"]
    assert plan.heatmap_jobs == [("cxr", "full", "zs"), ("cxr", "full", "lp"), ("cxr", "full", "ft")]
    targets = plan.all_targets()
    for setting in ("zs", "lp", "ft"):
        assert f"results/heatmaps/cxr/full/{setting}_scores.parquet" in targets
        assert f"results/multilabel/cxr/full/{setting}.json" in plan.multilabel_results()
    assert "results/heatmaps/cxr/full/settings_comparison.png" in targets
    assert not [t for t in targets if "/bare/" in t and "heatmaps" in t]
    assert plan.multilabel_results() == [path("multilabel_metrics", dataset="cxr", model=m, setting=s) for _, m, s in plan.study_jobs()]
    # the family that declares nothing: only the linear probe, and why not the rest
    assert plan.setting_skip_reason("bare", "zs") == NO_TEXT_TOWER
    assert plan.setting_skip_reason("bare", "ft") == "family 'toy-bare' has no trainable image tower"
    assert plan.heatmap_skip_reason("bare", "lp") == "family 'toy-bare' has no layers to attribute"
    assert plan.heatmap_skip_reason("full", "lp") is None


def test_the_cross_checks_ask_the_new_family_too(toy_families):
    config = {
        "datasets": {"cxr": CXR},
        "models": {"bare": {"family": "toy-bare", "name": "b"}, "full": {"family": "toy-full", "name": "f"}},
        "multilabel": {"finetune": {"models": ["bare", "full"]}},
        "heatmaps": {"models": ["bare", "full"]},
    }
    with pytest.raises(VlmprobeError) as error:
        check_config(config, SCHEMA)
    text = str(error.value)
    assert "2 problem(s)" in text
    assert "lists 'bare', whose family 'toy-bare' has no trainable image tower." in text
    assert "lists 'bare', whose family 'toy-bare' has no layers to attribute." in text
    assert "toy-full" in text  # the fix names the trainable families, the new one included


def test_protocol_sadman2025_adds_the_notebooks_analyses_and_grad_cam():
    datasets = {"iu": {"kind": "iu-xray", "root": "data/iu"}}
    ours = plan_of(datasets, {"vit": TINY_VIT})
    assert ours.paper_analyses.dirs() == [] and "protocol" not in ours.heatmap_options(wildcards(dataset="iu", model="vit", setting="zs"))
    paper = plan_of(datasets, {"vit": TINY_VIT}, multilabel={"protocol": "sadman2025"})
    folder = path("multilabel_paper_analyses", dataset="iu", model="vit")
    assert paper.paper_analyses.dirs() == [folder] and folder in paper.all_targets()
    inputs = paper.paper_analyses.inputs(wildcards(dataset="iu", model="vit"))
    assert {"zs_predictions", "lp_predictions", "ft_predictions", "lp_head", "ft_head", "ft_embeddings", "ft_info"} <= set(inputs)
    assert paper.heatmap_options(wildcards(dataset="iu", model="vit", setting="zs"))["protocol"] == "sadman2025"


# -- probes (vlmprobe.plan.probes) ---------------------------------------------------------------------


def test_the_probes_read_every_multiclass_table_and_compare_their_predictions(shipped):
    probes = shipped.probes
    assert probes.results() == [path("probes", dataset=d, model=m) for d in ("digits", "synthetic-cxr-patients") for m in shipped.models]
    assert probes.prediction_outputs() == {"knn": PATHS["probes_predictions"].replace("{probe}", "knn"), "logistic": PATHS["probes_predictions"].replace("{probe}", "logistic")}
    targets = shipped.all_targets()
    assert {"results/summary/probes.png", "results/summary/probes_rank_stability.csv", "results/summary/compare_knn.md", "results/summary/compare_logistic.png"} <= set(targets)
    assert probes.columns(wildcards(dataset="synthetic-cxr-patients")) == {"nuisances": ["meta_marker"], "subgroups": ["meta_marker"], "group": "meta_patient"}
    assert probes.columns(wildcards(dataset="digits")) == {"nuisances": [], "subgroups": [], "group": None}
    entries = probes.compare_entries(wildcards(probe="knn"))
    assert entries[0] == {"dataset": "digits", "model": "pixels", "predictions": "results/probes/digits/pixels.knn.predictions.parquet"}
    assert probes.linear_probe_results() == shipped.linear_probe_results()
    assert "enabled" not in probes.settings and probes.settings["knn"]["k"] == 20


def test_switched_off_probes_have_no_jobs_and_a_disabled_probe_no_predictions():
    digits = {"kind": "digits"}
    off = plan_of({"digits": digits}, {"pixels": PIXELS, "vit": TINY_VIT}, probes={"enabled": False})
    assert off.probes.results() == [] and off.probes.targets() == []
    no_knn = plan_of({"digits": digits}, {"pixels": PIXELS, "vit": TINY_VIT}, probes={"knn": {"enabled": False}})
    assert list(no_knn.probes.prediction_outputs()) == ["logistic"]
    assert not [t for t in no_knn.all_targets() if "compare_knn" in t]
    one_model = plan_of({"digits": digits}, {"pixels": PIXELS})
    assert one_model.probes.compared() == [] and "results/summary/probes.md" in one_model.all_targets()
    multilabel_only = plan_of({"cxr": CXR}, {"pixels": PIXELS})
    assert multilabel_only.probes.results() == [] and multilabel_only.probes.targets() == []
