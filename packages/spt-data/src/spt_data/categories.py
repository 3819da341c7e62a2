"""Category tables: the 10 BDD100K detection classes with BDD's own name mappings, the 20 VOC classes.

BDD mappings follow the BDD100K toolkit's ``configs/det.toml`` / ``box_track.toml``:
``name_mapping`` renames (person -> pedestrian, bike -> bicycle, motor -> motorcycle, caravan/van ->
car) and ``ignore_mapping`` maps to a class **and** sets the ignore flag (other person -> pedestrian,
other vehicle -> car, trailer -> truck). One rule for every format: category names are matched
case-insensitively, surrounding spaces ignored (``"Car "`` is ``car``). The old ``bdd100k_labels_images_*.json`` files also hold
``drivable area`` and ``lane`` polygons: they are not objects; readers skip them and log the count.
"""

from __future__ import annotations

__all__ = [
    "BDD_CLASSES",
    "BDD_IGNORE_MAPPING",
    "BDD_NAME_MAPPING",
    "BDD_NON_OBJECT",
    "VOC_ALIASES",
    "VOC_CLASSES",
    "bdd_category",
    "voc_category",
]

# Ids are 1-based positions, as in the BDD100K toolkit's COCO conversion.
BDD_CLASSES: tuple[str, ...] = (
    "pedestrian",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
    "traffic light",
    "traffic sign",
)
BDD_NAME_MAPPING: dict[str, str] = {
    "person": "pedestrian",
    "bike": "bicycle",
    "motor": "motorcycle",
    "caravan": "car",
    "van": "car",
}
BDD_IGNORE_MAPPING: dict[str, str] = {
    "other person": "pedestrian",
    "other vehicle": "car",
    "trailer": "truck",
}
BDD_NON_OBJECT: frozenset[str] = frozenset({"drivable area", "lane"})

# Ids are 1-based positions: the value of the class in VOC SegmentationClass PNGs.
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
# Spellings seen in VOC-layout exports (labelme's class_names.txt writes "potted plant", "tv/monitor").
VOC_ALIASES: dict[str, str] = {
    "potted plant": "pottedplant",
    "tv/monitor": "tvmonitor",
    "tv monitor": "tvmonitor",
    "dining table": "diningtable",
    "motor bike": "motorbike",
    "aeroplane": "aeroplane",
}


def bdd_category(name: str) -> tuple[int, str, bool] | None:
    """BDD label category (case and surrounding space ignored) -> (id 1..10, class name, ignore flag); None if unknown."""
    key = name.strip().lower()
    ignore = key in BDD_IGNORE_MAPPING
    canon = BDD_IGNORE_MAPPING.get(key) or BDD_NAME_MAPPING.get(key, key)
    if canon not in BDD_CLASSES:
        return None
    return BDD_CLASSES.index(canon) + 1, canon, ignore


def voc_category(name: str) -> tuple[int, str] | None:
    """VOC class name (case and surrounding space ignored, aliases mapped) -> (id 1..20, name); None if unknown."""
    key = name.strip().lower()
    canon = VOC_ALIASES.get(key, key)
    if canon not in VOC_CLASSES:
        return None
    return VOC_CLASSES.index(canon) + 1, canon
