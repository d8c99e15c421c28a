# Nuisance probes (vlmprobe.nuisance.probes): what an embedding encodes besides the diagnosis -- the meta_* columns a
# dataset names in `nuisances` -- with chance levels and variance shares, the UMAP grid coloured by each
# nuisance, and the shortcut-sensitivity curve of a synthetic-cxr `shortcut` marker. Cached tables only.
from vlmprobe.errors import VlmprobeError

PATHS.update(
    {
        "nuisance": "results/nuisance/{dataset}/{model}.json",
        "shortcut_curve": "results/nuisance/{dataset}/{model}_shortcut.json",
        "nuisance_umap": "results/nuisance/{dataset}/{model}_umap_{nuisance}.png",
        "summary_nuisance": "results/summary/nuisance.parquet",
        "summary_nuisance_csv": "results/summary/nuisance.csv",
        "summary_nuisance_md": "results/summary/nuisance.md",
        "summary_nuisance_html": "results/summary/nuisance.html",
        "summary_nuisance_png": "results/summary/nuisance.png",
        "summary_shortcut": "results/summary/shortcut_curve.parquet",
        "summary_shortcut_csv": "results/summary/shortcut_curve.csv",
        "summary_shortcut_md": "results/summary/shortcut_curve.md",
        "summary_shortcut_png": "results/summary/shortcut_curve.png",
    }
)
NUISANCE = config["nuisance"]
NUISANCES = {
    d: list(config["datasets"][d].get("nuisances", []))
    for d in DATASETS
    if NUISANCE["enabled"] and config["datasets"][d].get("nuisances")
}
for _dataset in DATASETS:
    if (
        "shortcut" in config["datasets"][_dataset]
        and config["datasets"][_dataset]["kind"] != "synthetic-cxr"
    ):
        raise VlmprobeError(
            f"`datasets: {_dataset}: shortcut` is set, but only kind synthetic-cxr draws a shortcut marker.",
            "remove the key (a real dataset's nuisances go in `nuisances:`).",
        )
SHORTCUT_DATASETS = [
    d
    for d in DATASETS
    if NUISANCE["enabled"]
    and NUISANCE["shortcut_curve"]["enabled"]
    and config["datasets"][d].get("shortcut")
]


wildcard_constraints:
    nuisance="meta_[^/]+",


rule nuisance_probe:
    input:
        manifest=PATHS["manifest"],
        embeddings=PATHS["embedding"],
    output:
        PATHS["nuisance"],
    log:
        log_path("nuisance_probe", "{dataset}/{model}"),
    benchmark:
        benchmark_path("nuisance_probe", "{dataset}/{model}")
    group:
        "analysis"
    conda:
        "../../envs/analysis.yaml"
    threads: 2
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cpu_runtime_min,
    params:
        spec=model_spec,
        nuisances=lambda wildcards: NUISANCES[wildcards.dataset],
        n_permutations=NUISANCE["n_permutations"],
    script:
        "../../scripts/nuisance.py"


rule shortcut_curve:
    input:
        manifest=PATHS["manifest"],
        embeddings=PATHS["embedding"],
    output:
        PATHS["shortcut_curve"],
    log:
        log_path("shortcut_curve", "{dataset}/{model}"),
    benchmark:
        benchmark_path("shortcut_curve", "{dataset}/{model}")
    group:
        "analysis"
    conda:
        "../../envs/analysis.yaml"
    threads: 2
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cpu_runtime_min,
    params:
        spec=model_spec,
        finding=lambda wildcards: config["datasets"][wildcards.dataset]["shortcut"][
            "finding"
        ],
        rates=NUISANCE["shortcut_curve"]["rates"],
        repeats=NUISANCE["shortcut_curve"]["repeats"],
    script:
        "../../scripts/shortcut_curve.py"


rule nuisance_umap:
    input:
        manifest=PATHS["manifest"],
        coords=PATHS["umap_coords"],
        quality=PATHS["umap_quality"],
    output:
        report(
            PATHS["nuisance_umap"],
            caption="../report/nuisance_umap.rst",
            category="Nuisance",
            subcategory="{dataset}",
            labels={
                "dataset": "{dataset}",
                "model": "{model}",
                "coloured by": "{nuisance}",
            },
        ),
    log:
        log_path("nuisance_umap", "{dataset}/{model}_{nuisance}"),
    group:
        "analysis"
    conda:
        "../../envs/analysis.yaml"
    resources:
        mem_mb=cpu_mem_mb,
        runtime=cpu_runtime_min,
    params:
        seed=config["seed"],
    script:
        "../../scripts/umap_nuisance.py"


rule summary_nuisance:
    input:
        results=lambda wildcards: nuisance_results(),
    output:
        table=PATHS["summary_nuisance"],
        csv=PATHS["summary_nuisance_csv"],
        markdown=PATHS["summary_nuisance_md"],
        html=report(
            PATHS["summary_nuisance_html"],
            caption="../report/nuisance.rst",
            category="Nuisance",
            subcategory="Summary",
        ),
        figure=report(
            PATHS["summary_nuisance_png"],
            caption="../report/nuisance.rst",
            category="Nuisance",
            subcategory="Summary",
        ),
    log:
        log_path("summary_nuisance", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    script:
        "../../scripts/summary_nuisance.py"


rule summary_shortcut:
    input:
        results=lambda wildcards: shortcut_results(),
    output:
        table=PATHS["summary_shortcut"],
        csv=PATHS["summary_shortcut_csv"],
        markdown=PATHS["summary_shortcut_md"],
        figure=report(
            PATHS["summary_shortcut_png"],
            caption="../report/shortcut_curve.rst",
            category="Nuisance",
            subcategory="Summary",
        ),
    log:
        log_path("summary_shortcut", "summary"),
    localrule: True
    conda:
        "../../envs/summary.yaml"
    script:
        "../../scripts/summary_shortcut.py"


def nuisance_results():
    return [
        PATHS["nuisance"].format(dataset=d, model=m) for d in NUISANCES for m in MODELS
    ]


def shortcut_results():
    return [
        PATHS["shortcut_curve"].format(dataset=d, model=m)
        for d in SHORTCUT_DATASETS
        for m in MODELS
    ]


def nuisance_targets():
    targets = []
    if NUISANCES:
        targets += [
            PATHS[key]
            for key in (
                "summary_nuisance",
                "summary_nuisance_csv",
                "summary_nuisance_md",
                "summary_nuisance_html",
                "summary_nuisance_png",
            )
        ]
    if NUISANCES and NUISANCE["umap"] and config["umap"]["enabled"]:
        targets += [
            PATHS["nuisance_umap"].format(dataset=d, model=m, nuisance=n)
            for d, columns in NUISANCES.items()
            for m in MODELS
            for n in columns
        ]
    if SHORTCUT_DATASETS:
        targets += [
            PATHS[key]
            for key in (
                "summary_shortcut",
                "summary_shortcut_csv",
                "summary_shortcut_md",
                "summary_shortcut_png",
            )
        ]
    return targets


TARGET_FUNCTIONS.append(nuisance_targets)
