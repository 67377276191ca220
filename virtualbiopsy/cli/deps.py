"""``virtualbiopsy deps``: which Python packages each Slicer module needs, and which are missing."""

from __future__ import annotations

from virtualbiopsy.dependencies import all_requirements


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "deps",
        help="list the Python packages each module needs and whether this environment has them",
        description=(
            "List, per Slicer module, the pinned Python packages it installs on first use inside Slicer, "
            "and whether this Python environment already has each one (read from package metadata, "
            "without importing). Exit status 1 if any is missing."
        ),
    )
    parser.set_defaults(run=run)


def run(args) -> int:
    missing = 0
    for group, requirements in all_requirements().items():
        print(f"{group}:")
        for requirement in requirements:
            installed = requirement.installed_version()
            ok = requirement.is_satisfied()
            missing += not ok
            state = "ok" if ok else ("MISSING" if installed is None else f"have {installed}")
            print(f"  {requirement.spec:<28} {state}")
    return 1 if missing else 0
