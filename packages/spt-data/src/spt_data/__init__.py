"""spt-data: dataset readers, synthetic street scenes, selection labels and subsets for SPT. No torch.

Readers (:func:`read_coco`, :func:`read_bdd`, :func:`read_voc`) return a :class:`Dataset` of
:class:`Record` (one schema for every format); :func:`selection_labels` rasterises a record's
objects into token grids of the training frame (:func:`resize_policy`); :func:`object_ratio` and
:func:`subset_manifest` make the small-object subsets (BDD-S, VOC-S); :mod:`spt_data.synth` writes the
embedded synthetic dataset. Bad input raises :class:`DataError` naming the file and the record.
"""

from .bdd import read_bdd
from .coco import read_coco
from .errors import DataError, OnError
from .frame import Frame, identity_frame, resize_policy
from .labels import (
    LabelTable,
    hflip_grid,
    labels_source_problem,
    read_labels,
    selection_labels,
    selection_labels_reference,
    source_params,
    write_labels,
)
from .records import Dataset, PolygonMask, Record, RleMask, hflip_record, records_fingerprint
from .store import read_records, write_records
from .subsets import object_ratio, read_manifest, subset_manifest, write_manifest
from .voc import read_voc

__version__ = "0.1.0"

__all__ = [
    "DataError",
    "Dataset",
    "Frame",
    "LabelTable",
    "OnError",
    "PolygonMask",
    "Record",
    "RleMask",
    "hflip_grid",
    "hflip_record",
    "identity_frame",
    "labels_source_problem",
    "object_ratio",
    "read_bdd",
    "read_coco",
    "read_labels",
    "read_manifest",
    "read_records",
    "read_voc",
    "records_fingerprint",
    "resize_policy",
    "selection_labels",
    "selection_labels_reference",
    "source_params",
    "subset_manifest",
    "write_labels",
    "write_manifest",
    "write_records",
]
