"""The embedding explorer: each (dataset, model)'s UMAP layout as a page in the browser, with the images behind the points.

* :mod:`vlmprobe.explore.thumbnails`: one set of thumbnail sprite sheets per dataset, shared by every model's page;
* :mod:`vlmprobe.explore.data`: what a page shows: the layout of one cell, the tooltip fields and the colourings;
* :mod:`vlmprobe.explore.page`: the self-contained HTML page (canvas drawing, no library, works from ``file://``);
* :mod:`vlmprobe.explore.stage`: the stage's jobs: thumbnails, one page, the index.
"""
