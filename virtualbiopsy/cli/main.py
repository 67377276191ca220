"""Entry point of the ``virtualbiopsy`` console script.

Each sub-command lives in its own module with ``add_parser(subparsers)`` and ``run(args)``;
errors the user can act on (:class:`~virtualbiopsy.errors.VirtualBiopsyError`) are printed as
one clear line with exit status 2, a Ctrl+C cancels cleanly with status 130.
"""

from __future__ import annotations

import argparse
import sys

from virtualbiopsy import __version__
from virtualbiopsy.errors import Cancelled, VirtualBiopsyError

COMMANDS = ("demo", "phantom", "preprocess", "segment", "compare", "radiomics", "ibsi-report", "reduce", "harmonise",
            "fcf", "fcf-cohort", "dce", "predict", "deps")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="virtualbiopsy",
        description=(
            "Virtual Biopsy: paediatric tumour MRI analysis (segmentation, radiomics, habitat ADC/DCE, "
            "outcome models) on Slicer's MRML, headless. Research use only, not for clinical decisions."
        ),
    )
    parser.add_argument("--version", action="version", version=f"virtualbiopsy {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    from virtualbiopsy.cli import (
        compare,
        dce,
        demo,
        deps,
        fcf,
        fcf_cohort,
        ibsi_report,
        phantom,
        predict,
        preprocess,
        radiomics,
        segment,
        signature,
    )

    for module in (demo, phantom, preprocess, segment, compare, radiomics, ibsi_report, signature, fcf, fcf_cohort,
                   dce, predict, deps):
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except Cancelled as error:
        print(f"virtualbiopsy: {error}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("virtualbiopsy: interrupted; partial outputs may remain in the output folder.", file=sys.stderr)
        return 130
    except VirtualBiopsyError as error:
        print(f"virtualbiopsy: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
