"""The command line every POT API sample starts from (``openvino.tools.pot.api.samples.utils.argument_parser``).

A sample copied out of POT's package runs with its import changed to
``from pot_torch.api.samples.utils.argument_parser import get_common_argparser``.
"""
from argparse import ArgumentParser


def get_common_argparser() -> ArgumentParser:
    """A parser with POT's sample options: ``-m/--model`` (required), ``-w/--weights``, ``-d/--dataset``
    (required); abbreviations of long options are not accepted, as in POT. Samples add their own options."""
    parser = ArgumentParser(description="pot_torch API sample (POT's sample command line)", allow_abbrev=False)
    parser.add_argument("-m", "--model", required=True, help="the model's .xml file, e.g. -m model.xml")
    parser.add_argument("-w", "--weights", required=False,
                        help="the model's .bin file (default: the .bin next to the .xml), e.g. -w model.bin")
    parser.add_argument("-d", "--dataset", required=True, help="the folder holding the data, e.g. -d images/")
    return parser
