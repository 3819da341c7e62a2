"""One case rule for category names in every format: case and surrounding spaces are ignored."""

from spt_data.categories import bdd_category, voc_category


def test_category_names_ignore_case_and_space():
    assert bdd_category("Car ") == bdd_category("car") == (3, "car", False)
    assert bdd_category("Other Vehicle") == (3, "car", True)
    assert voc_category(" Dog") == voc_category("dog") == (12, "dog")
    assert bdd_category("spaceship") is None
