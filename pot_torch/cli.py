"""The ``pot-torch`` command: the demo, POT's simplified mode and POT config files."""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from pot_torch.cli_pot import add_pot_arguments, pot_options_given, run_pot_command
from pot_torch.image_folder import add_model_and_images_arguments, check_subset_size
from pot_torch.report.command import add_report_parser

_DESCRIPTION = """\
Post-training INT8 quantization of OpenVINO models with the POT API.

  pot-torch demo                  train a small CNN, quantize it, print FP32 vs INT8 (needs the [torch] extra)
  pot-torch quantize -m M.xml --data DIR
                                  DefaultQuantization of an IR on a folder of images (POT's simplified mode)
  pot-torch report -m M.xml --data DIR
                                  which layers cost accuracy and what INT8 saves per layer: an HTML report
  pot-torch -c config.json        run a POT config file (model / engine / compression sections)
  pot-torch -q default -m M.xml -w M.bin --engine simplified --data-source DIR
                                  POT's own command line, as the `pot` command took it
"""

_CONFIG_EPILOG = """\
examples:
  pot-torch demo --quick
  pot-torch quantize -m model.xml --data calibration_images/ -o model_int8
  pot-torch -c default_quantization.json -o results/ --overwrite
  pot-torch -q default -m model.xml -w model.bin --engine simplified --data-source calibration_images/
      (writes ./results/model_name_DefaultQuantization/<timestamp>/optimized/model_name.xml, as POT did)

Run 'pot-torch demo -h' or 'pot-torch quantize -h' for the options of each command.
A config file's engine section must be {"type": "simplified", "data_source": "<image folder>"};
Accuracy Checker configs are not supported (use the Python API with a DataLoader and Metric).
"""

_DEMO_EPILOG = """\
example:
  pot-torch demo                 # about 2 minutes on 2 CPU cores, writes ./pot_torch_demo/
  pot-torch demo --quick -o /tmp/demo --overwrite
"""

_QUANTIZE_EPILOG = """\
example:
  pot-torch quantize -m resnet.xml -w resnet.bin --data images/ --preset mixed --subset-size 300 -o resnet_int8

Images are read with Pillow from DIR and its subfolders, resized to the model input's height and width, laid
out as the input expects (NCHW or NHWC) with pixel values 0..255 and BGR channel order, as POT's simplified
mode fed them. The INT8 IR is written to OUT/<model name>.xml and .bin.
"""


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (``pot-torch -h`` shows every option with an example)."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="pot-torch", description=_DESCRIPTION, epilog=_CONFIG_EPILOG,
                                     formatter_class=formatter, allow_abbrev=False)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="a POT config file (.json, comments allowed, or .yaml) to run, e.g. -c config.json")
    parser.add_argument("-o", dest="config_output", metavar="OUT",
                        help="with -c or -q: write the quantized IR into OUT itself instead of POT's layout "
                        "under --output-dir, e.g. -o out/")
    parser.add_argument("--overwrite", dest="config_overwrite", action="store_true",
                        help="with -o or -d: replace a previous output (otherwise an existing folder is an error); "
                        "a folder holding other files or the inputs is never replaced")
    parser.add_argument("--keep-uncompressed-weights", dest="config_keep_weights", action="store_true",
                        help="with -c or -q: store weights as FP32 instead of INT8 (as POT's option)")
    add_pot_arguments(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser("demo", help="train a small CNN on generated images, quantize it, print a table",
                               description="Train a small CNN on a generated image data set (nothing is "
                               "downloaded), convert it to OpenVINO, quantize it with DefaultQuantization and "
                               "AccuracyAwareQuantization and print FP32 vs INT8 accuracy, latency, speedup, IR "
                               "size and time. Needs the [torch] extra.",
                               epilog=_DEMO_EPILOG, formatter_class=formatter)
    demo.add_argument("--quick", action="store_true",
                      help="tiny data, model and training (under 30 s; for CI), e.g. --quick")
    demo.add_argument("-o", "--output-dir", default="pot_torch_demo", metavar="OUT",
                      help="folder for the FP32 and INT8 IR files (default: ./pot_torch_demo)")
    demo.add_argument("--overwrite", action="store_true",
                      help="replace a previous demo output in OUT; a folder holding other files is never replaced")
    demo.add_argument("--seed", type=int, default=0, help="seed of the data, weights and training (default: 0)")

    quantize = commands.add_parser("quantize", help="DefaultQuantization of an IR on a folder of images",
                                   description="Quantize an OpenVINO IR with DefaultQuantization, using a folder "
                                   "of images as calibration data (POT's simplified mode).",
                                   epilog=_QUANTIZE_EPILOG, formatter_class=formatter)
    add_model_and_images_arguments(quantize)
    quantize.add_argument("-n", "--name", metavar="NAME", help="file name of the output model (default: the "
                          ".xml's name)")
    quantize.add_argument("-o", "--output-dir", metavar="OUT",
                          help="folder for the INT8 IR (default: ./<model name>_int8), e.g. -o net_int8")
    quantize.add_argument("--overwrite", action="store_true",
                          help="replace a previous output in OUT; a folder holding other files, the model or the "
                          "images is never replaced")
    quantize.add_argument("--keep-uncompressed-weights", action="store_true",
                          help="store weights as FP32 instead of INT8")
    add_report_parser(commands, formatter)
    return parser


def _run_quantize(args: argparse.Namespace) -> None:
    from pathlib import Path

    from pot_torch.cli_config import run_config, simplified_config

    check_subset_size(args.subset_size)
    name = args.name or Path(args.model).stem
    config = simplified_config(args.model, args.weights, args.data, args.preset, args.subset_size, name,
                               args.channel_order)
    run_config(config, args.output_dir or f"{name}_int8", args.overwrite, args.keep_uncompressed_weights)


def _run_demo(args: argparse.Namespace) -> None:
    try:
        from pot_torch_showcase.demo import run_demo
    except ImportError as error:
        raise ImportError(f"the demo needs PyTorch: pip install 'pot_torch[torch]' ({error})") from error
    run_demo(args.output_dir, quick=args.quick, overwrite=args.overwrite, seed=args.seed)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``pot-torch``; returns the exit code (0 success, 1 bad input or failure, 2 usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    try:
        if args.version:
            from pot_torch import __version__

            print(__version__)
        elif args.command and (args.config or pot_options_given(args)):
            parser.error(f"give either -c/--config or the '{args.command}' command, not both (POT's options "
                         "-q, -m, --output-dir, ... go without a command)")
        elif args.config or pot_options_given(args):
            run_pot_command(args)
        elif args.command == "demo":
            _run_demo(args)
        elif args.command == "quantize":
            _run_quantize(args)
        elif args.command == "report":
            from pot_torch.report.command import run_report_command

            run_report_command(args)
        else:
            parser.print_help()
            return 2
    except SystemExit as exit_:
        return int(exit_.code or 0)
    except KeyboardInterrupt:
        print("pot-torch: interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, KeyError, OSError, RuntimeError, ImportError) as error:
        reason = " ".join(str(error).split()) or type(error).__name__
        print(f"pot-torch: error: {reason}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
