"""Build hook (hatchling): compile the linear sentiment scorer's inner loops, ``_speedups.c``.

The extension is optional: veille's pure-Python scorer gives the same scores to the bit, slower. So
the build never fails for want of a compiler: it says so on stderr and makes a pure-Python wheel.
``VEILLE_SPEEDUPS=0`` skips the compilation; ``VEILLE_SPEEDUPS=1`` makes a failed compilation an
error. An editable install (``make install``) compiles into the source tree, where the package is
imported from; a wheel carries the module and is tagged for this Python and platform.

The compiler and flags are this Python's own (``sysconfig``: ``CC``, ``CFLAGS``, ``LDSHARED``), as
setuptools would use. The sha256 of the C source is compiled in (``SOURCE_HASH``), so that
``veille.sentiment.speedups`` can refuse a module built from another version of the file.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("shared/veille/sentiment/_speedups.c")
PACKAGE_DIR = "veille/sentiment"


def compile_speedups(root: Path, out_dir: Path) -> Path:
    """Compile ``SOURCE`` into ``out_dir`` and return the module's path (``CalledProcessError`` or
    ``OSError`` when it cannot)."""
    source = root / SOURCE
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    target = out_dir / f"_speedups{suffix}"
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    cflags = shlex.split(sysconfig.get_config_var("CFLAGS") or "")
    ccshared = shlex.split(sysconfig.get_config_var("CCSHARED") or "-fPIC")
    ldshared = shlex.split(os.environ.get("LDSHARED") or sysconfig.get_config_var("LDSHARED") or "cc -shared")
    include = sysconfig.get_paths()["include"]
    with tempfile.TemporaryDirectory() as scratch:
        obj = Path(scratch) / "_speedups.o"
        module = Path(scratch) / target.name
        define = f'-DVEILLE_SOURCE_HASH="{digest}"'
        # The commands are this Python's own compiler settings (sysconfig) or the builder's CC/LDSHARED.
        # -ffp-contract=off: no fused multiply-add (aarch64 compilers fuse by default), so the module rounds
        # every product and sum as Python does and gives the same scores to the bit.
        compile_command = [
            *cc,
            *cflags,
            *ccshared,
            "-O2",
            "-ffp-contract=off",
            f"-I{include}",
            define,
            "-c",
            str(source),
            "-o",
            str(obj),
        ]
        subprocess.run(compile_command, check=True)  # noqa: S603
        subprocess.run([*ldshared, str(obj), "-o", str(module)], check=True)  # noqa: S603
        out_dir.mkdir(parents=True, exist_ok=True)
        # Moved into place whole: a process importing it meanwhile sees the old file or the new one.
        staged = out_dir / f".{target.name}.tmp"
        staged.write_bytes(module.read_bytes())
        staged.chmod(0o755)
        staged.replace(target)
    return target


BUILD_INPUTS = ("pyproject.toml", "hatch_build.py")
"""Files that shape a wheel besides its packages (metadata, dependencies, entry points, compile flags):
their sha256 go into the wheel (``.dist-info/extra_metadata/build-inputs.sha256``), which
``deploy/docker/wheel_matches.py`` checks with the packages' files."""


def build_inputs(root: Path) -> str:
    """``sha256  name`` lines of :data:`BUILD_INPUTS` (as ``sha256sum`` prints them)."""
    return "".join(f"{hashlib.sha256((root / name).read_bytes()).hexdigest()}  {name}\n" for name in BUILD_INPUTS)


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    """Compiles ``_speedups.c`` for wheels and editable installs (see the module docstring)."""

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel":
            return
        root = Path(self.root)
        editable = version == "editable"
        if editable:
            out_dir = root / "shared" / PACKAGE_DIR
        else:
            self._scratch = tempfile.TemporaryDirectory(prefix="veille-speedups-")
            out_dir = Path(self._scratch.name)
            inputs = out_dir / "build-inputs.sha256"
            inputs.write_text(build_inputs(root), encoding="utf-8")
            build_data["extra_metadata"][str(inputs)] = inputs.name
        wanted = os.environ.get("VEILLE_SPEEDUPS", "").strip()
        if wanted == "0":
            return
        try:
            built = compile_speedups(root, out_dir)
        except (OSError, subprocess.CalledProcessError) as exc:
            if wanted == "1":
                raise
            print(
                f"veille: the sentiment scorer's C module was not compiled ({exc}); the pure-Python scorer "
                "will run (same scores, slower). Install a C compiler and Python's headers to build it.",
                file=sys.stderr,
            )
            return
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        if not editable:
            build_data["force_include"][str(built)] = f"{PACKAGE_DIR}/{built.name}"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        scratch = getattr(self, "_scratch", None)
        if scratch is not None:
            scratch.cleanup()
