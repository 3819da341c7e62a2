"""SPT training and evaluation over spt-data outputs: datasets, the training engine, COCO / VOC /
selection metrics, benchmarks and tables; console script ``spt-train``."""

__version__ = "0.1.0"
