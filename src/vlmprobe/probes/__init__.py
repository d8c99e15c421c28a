"""The probes stage: six further readings of each cached embedding table beside the poster's linear probe.

Per (dataset, model), on the linear probe's test split and folds (the group-aware split where the dataset
declares a ``group:``), from the cached embedding table only:

* :mod:`~vlmprobe.probes.knn`: DINO's weighted k-nearest-neighbour classifier (no training);
* :mod:`~vlmprobe.probes.few_shot`: SimpleShot nearest-centroid few-shot accuracy over many draws;
* :mod:`~vlmprobe.probes.logistic`: logistic regression with C chosen by CV on the training folds only;
* :mod:`~vlmprobe.probes.subgroups`: the probes' accuracy per value of a ``meta_*`` attribute, worst group, gap;
* :mod:`~vlmprobe.probes.robustness`: PathoROB's robustness index per declared nuisance;

and per dataset, across models, :mod:`~vlmprobe.probes.ranks`: how much the model ranking changes between probes.
:mod:`~vlmprobe.probes.stage` runs one job, :mod:`~vlmprobe.probes.summary` writes the summaries and figures.
"""
