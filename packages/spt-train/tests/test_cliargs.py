"""The argument types of the three CLIs say the same thing the same way.

spt-models keeps its own number, size and output-file types because it does not depend on spt-data
(DESIGN §1: spt-data depends on nothing, spt-models on spa-core only); spt-train, which depends on
both, checks here that the two copies accept and refuse the same values with the same message.
"""

import argparse
import os

import pytest

from spt_data import cliargs as data_args
from spt_models import cliargs as models_args
from spt_train import cliargs as train_args


def _outcome(parse, text):
    try:
        return ("ok", parse(text))
    except argparse.ArgumentTypeError as e:
        return ("error", str(e))


@pytest.mark.parametrize("text", ["1", "7", "0", "-3", "2.5", "x", ""])
@pytest.mark.parametrize("name", ["positive_int", "nonneg_int"])
def test_the_number_types_are_one_in_every_cli(name, text):
    data = _outcome(getattr(data_args, name), text)
    assert _outcome(getattr(models_args, name), text) == data
    assert _outcome(getattr(train_args, name), text) == data


@pytest.mark.parametrize("text", ["1280x800", "320X192", "32x32", "31x64", "64x0", "1280", "axb", "1x2x3"])
def test_widthxheight_parses_width_first_with_one_message(text):
    """spt-models' ``size`` is spt-data's ``_size`` at the coarsest stride (32), example aside."""
    models = _outcome(models_args.size, text)
    data = _outcome(lambda t: data_args._size(t, models_args.MIN_SIDE), text)
    assert models == (data if data[0] == "ok" else ("error", data[1].replace("320x192", "1280x800")))
    if models[0] == "ok":
        width, height = (int(v) for v in text.lower().split("x"))
        assert models[1] == (width, height)
    assert _outcome(train_args.size, text) == models


def test_an_output_file_is_checked_alike(tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("")
    cases = [str(tmp_path / "new" / "m.json"), str(tmp_path), str(a_file / "m.json")]
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases.append(str(locked / "m.json"))
    for text in cases:
        data = _outcome(data_args.writable_file, text)
        assert _outcome(models_args.output_file, text) == data, text
        assert _outcome(train_args.output_file, text) == data, text
    assert _outcome(train_args.output_file, cases[1]) == (
        "error",
        f"{tmp_path} is a directory, expected a file name",
    )


def test_an_input_file_is_checked_alike(tmp_path):
    for text in [str(tmp_path / "nope.parquet"), str(tmp_path)]:
        assert _outcome(train_args.existing_file, text) == _outcome(data_args.existing_file, text)
    assert _outcome(train_args.existing_file, str(tmp_path / "x")) == (
        "error",
        f"file not found: {tmp_path / 'x'}",
    )
