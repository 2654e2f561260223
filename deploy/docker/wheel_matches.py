"""Check that a veille wheel was built from the sources beside it (the image's builder stage runs this).

``make wheelhouse`` builds veille's own wheel on the host (with the sentiment scorer's C module,
compiled by the host's compiler, which the image's base may not have). The image installs that wheel
instead of building /src only if every file of its packages is byte for byte the file in /src, /src
has no file the wheel lacks, and the wheel was built from the same pyproject.toml and hatch_build.py
(their sha256, recorded in the wheel by the build hook): a wheel left over from an older checkout
fails the build, saying so.

Usage: python3 wheel_matches.py WHEEL SRC
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import sys
import zipfile
from pathlib import Path

PACKAGES = {"veille": "shared/veille", "services": "services", "veille_cli": "veille_cli"}
"""Top-level package in the wheel -> its folder in the source tree (pyproject.toml's wheel target)."""
SKIPPED_SUFFIXES = (".so", ".pyc")
BUILD_INPUTS = ("pyproject.toml", "hatch_build.py")
"""As in hatch_build.py: the files besides the packages that shape a wheel."""


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def mismatches(wheel: Path, src: Path) -> list[str]:
    """What differs between the wheel's package files and the source tree (empty: they match)."""
    with zipfile.ZipFile(wheel) as archive:
        record_name = next(name for name in archive.namelist() if name.endswith(".dist-info/RECORD"))
        record = archive.read(record_name).decode()
        inputs_name = record_name.replace("/RECORD", "/extra_metadata/build-inputs.sha256")
        built_from = archive.read(inputs_name).decode() if inputs_name in archive.namelist() else ""
    in_wheel: dict[str, str] = {}
    for row in csv.reader(io.StringIO(record)):
        if not row or not row[1]:
            continue
        name = row[0]
        top = name.split("/", 1)[0]
        if top in PACKAGES and not name.endswith(SKIPPED_SUFFIXES):
            in_wheel[PACKAGES[top] + name[len(top) :]] = row[1]
    in_src = {
        path.relative_to(src).as_posix(): path
        for folder in PACKAGES.values()
        for path in (src / folder).rglob("*")
        if path.is_file() and "__pycache__" not in path.parts and not path.name.endswith(SKIPPED_SUFFIXES)
    }
    problems = [f"not in the wheel: {name}" for name in sorted(set(in_src) - set(in_wheel))]
    # What shaped the wheel besides its packages (hatch_build.py's BUILD_INPUTS, with their sha256).
    expected_inputs = "".join(
        f"{hashlib.sha256((src / name).read_bytes()).hexdigest()}  {name}\n"
        for name in BUILD_INPUTS
        if (src / name).is_file()
    )
    if built_from != expected_inputs:
        problems.append(
            f"built from another {' or '.join(BUILD_INPUTS)}" if built_from else "no record of its build inputs"
        )
    problems += [f"not in the sources: {name}" for name in sorted(set(in_wheel) - set(in_src))]
    problems += [
        f"differs: {name}"
        for name in sorted(set(in_src) & set(in_wheel))
        if _digest(in_src[name].read_bytes()) != in_wheel[name]
    ]
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    wheel, src = Path(argv[1]), Path(argv[2])
    problems = mismatches(wheel, src)
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        print(
            f"{wheel.name} was not built from these sources (run `make wheelhouse` again):\n  {shown}{more}",
            file=sys.stderr,
        )
        return 1
    print(f"{wheel.name} matches the sources")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
