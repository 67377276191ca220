"""Entry point of the ``virtualbiopsy`` console script.

Each sub-command lives in its own module with ``add_parser(subparsers)`` and ``run(args)``.
Exit status: 0 done; 2 an error the user can act on (:class:`~virtualbiopsy.errors.VirtualBiopsyError`,
or a file that cannot be read or written), printed as one line ``virtualbiopsy: error: ...``;
3 a cohort run (``segment`` / ``radiomics --manifest``) finished but some cases failed (its table names
them and says why); 130 cancelled (Ctrl+C); 1 an internal error (a bug: one line, the traceback saved to a file;
``VIRTUALBIOPSY_DEBUG=1`` shows it).
Every command's ``--out`` follows one rule (:mod:`virtualbiopsy.cli.output`): a refused or failed run
leaves nothing behind, and an earlier run's results are replaced only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
import warnings

from virtualbiopsy import __version__
from virtualbiopsy.cli.output import add_overwrite_flags, guard_for
from virtualbiopsy.errors import Cancelled, VirtualBiopsyError, VirtualBiopsyWarning

COMMANDS = ("demo", "phantom", "preprocess", "segment", "compare", "radiomics", "ibsi-report", "reduce", "harmonise",
            "fcf", "fcf-cohort", "dce", "predict", "dicom", "pacs", "view", "deps")


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
        dicom,
        fcf,
        fcf_cohort,
        ibsi_report,
        pacs,
        phantom,
        predict,
        preprocess,
        radiomics,
        segment,
        signature,
        view,
    )

    for module in (demo, phantom, preprocess, segment, compare, radiomics, ibsi_report, signature, fcf, fcf_cohort,
                   dce, predict, dicom, pacs, view, deps):
        module.add_parser(subparsers)
    add_overwrite_flags(parser)
    return parser


def _os_error_line(error: OSError) -> str:
    """One line for a file the command could not read or write (a full disk, a read-only place ...)."""
    names = " -> ".join(f"'{name}'" for name in (error.filename, error.filename2) if name is not None)
    return f"{names + ': ' if names else ''}{error.strerror or error}"


def _internal_error(error: BaseException) -> int:
    if os.environ.get("VIRTUALBIOPSY_DEBUG"):
        raise error
    with tempfile.NamedTemporaryFile("w", prefix="virtualbiopsy-crash-", suffix=".txt", delete=False) as stream:
        traceback.print_exception(error, file=stream)
    print(f"virtualbiopsy: internal error ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
          f"; this is a bug, please report it with {stream.name}", file=sys.stderr)
    return 1


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """The library's own warnings as one line each ('virtualbiopsy: warning: ...'); others as Python shows them."""
    if issubclass(category, VirtualBiopsyWarning):
        print(f"virtualbiopsy: warning: {' '.join(str(message).split())}", file=file or sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        return _run(args, argv)


def _run(args, argv) -> int:
    guard = None
    try:
        guard = guard_for(args, argv)
        if guard is None:
            return int(args.run(args) or 0)
        with guard:
            return int(args.run(args) or 0)
    except Cancelled as error:
        print(f"virtualbiopsy: {error}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("virtualbiopsy: interrupted; nothing of this run was kept"
              + (" but its finished cases (run it again to resume)" if getattr(guard, "resumable", False) else "")
              + ".", file=sys.stderr)
        return 130
    except VirtualBiopsyError as error:
        print(f"virtualbiopsy: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"virtualbiopsy: error: {_os_error_line(error)}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - a bug: one line for the user, the traceback in a file
        return _internal_error(error)


if __name__ == "__main__":
    sys.exit(main())
