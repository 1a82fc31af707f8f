"""An offline wheelhouse for the GPU check: what a GPU image lacks of orpo-dist's stack, as wheels.

Run where a package registry is reachable (this development machine):

    bash benchmarks/gpu_check.sh build-wheelhouse DIR [--have image-packages.txt] [--python-version 3.11]

The versions are the ones installed here, the ones the test suite runs on (pins.json records
them). The dependencies come from their installed metadata; torch and what torch itself
requires are left out (the image's CUDA torch stays), and so is everything listed in --have (the
image's package names, written by gpu_check.sh when it refuses). Wheels are for the image's
platform and Python (manylinux x86_64 by default); deepspeed, published as a source archive
only, is built here into a pure-Python wheel (its CUDA ops compile on the GPU at first use).
The wheelhouse must stay under 64 MiB to travel: over that, the build refuses and lists the
largest wheels.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

DEFAULT_FOR = ("trl", "deepspeed", "bitsandbytes", "datasets")  # what the GPU images seen lack
LIMIT_MIB = 64
PLATFORM = "manylinux_2_28_x86_64"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(dist: str, python_version: str) -> list[str]:
    """Names of the distributions `dist` needs (no extras), for the target Python."""
    from packaging.requirements import Requirement

    env = {"python_version": python_version, "python_full_version": python_version + ".0", "extra": "",
           "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
           "os_name": "posix", "implementation_name": "cpython", "platform_python_implementation": "CPython"}
    out = []
    for line in metadata.requires(dist) or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate(env):
            out.append(canonical(req.name))
    return out


def closure(roots, python_version: str) -> set[str]:
    seen, todo = set(), [canonical(r) for r in roots]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            todo.extend(requirements(name, python_version))
        except metadata.PackageNotFoundError:
            raise SystemExit(f"wheelhouse: error: {name} is not installed here, so its version and dependencies "
                             "are unknown; run this from orpo-dist's own venv (scripts/setup.sh)") from None
    return seen


def wanted(roots, have: set[str], python_version: str) -> dict[str, str]:
    """{distribution: version installed here} for the roots and their dependencies, minus torch's
    own closure and what the image has."""
    skip = closure(["torch"], python_version) | have
    return {name: metadata.version(name) for name in sorted(closure(roots, python_version) - skip)}


def fetch(name: str, version: str, out: Path, python_version: str, platform: str) -> None:
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    binary = subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:", "--platform", platform,
                             "--python-version", python_version, "--implementation", "cp", "-d", str(out),
                             f"{name}=={version}"], capture_output=True, text=True)
    if binary.returncode == 0:
        return
    # No wheel published (deepspeed): build one here without compiled ops, pure Python.
    built = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(out), f"{name}=={version}"],
                           capture_output=True, text=True, env={**os.environ, "DS_BUILD_OPS": "0"})
    if built.returncode != 0:
        raise SystemExit(f"wheelhouse: error: no wheel of {name}=={version} for {platform} / Python {python_version}, "
                         f"and building one failed:\n{built.stderr[-1500:]}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gpu_check.sh build-wheelhouse", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dir", help="an empty or new folder for the wheels")
    p.add_argument("--for", dest="roots", nargs="+", default=list(DEFAULT_FOR),
                   help=f"distributions the image lacks (default: {' '.join(DEFAULT_FOR)})")
    p.add_argument("--have", help="the image's installed distributions, one name per line (gpu_check.sh writes "
                   "image-packages.txt when it refuses): left out of the wheelhouse")
    p.add_argument("--python-version", default=f"{sys.version_info[0]}.{sys.version_info[1]}",
                   help="the image's Python (default: this one's)")
    p.add_argument("--platform", default=PLATFORM, help=f"the image's wheel platform (default {PLATFORM})")
    args = p.parse_args(argv)
    out = Path(args.dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"wheelhouse: error: {out} exists and is not an empty folder; name a new one", file=sys.stderr)
        return 2
    have = set()
    if args.have:
        have = {canonical(re.split(r"[=<> @]", line.strip(), maxsplit=1)[0])
                for line in Path(args.have).read_text().splitlines() if line.strip() and not line.startswith("#")}
    pins = wanted(args.roots, have, args.python_version)
    out.mkdir(parents=True, exist_ok=True)
    for name, version in pins.items():
        print(f"  {name}=={version}", flush=True)
        fetch(name, version, out, args.python_version, args.platform)
    (out / "pins.json").write_text(json.dumps(pins, indent=1) + "\n")
    sizes = sorted(((f.stat().st_size, f.name) for f in out.glob("*.whl")), reverse=True)
    total = sum(s for s, _ in sizes) / 2**20
    if total > LIMIT_MIB:
        largest = "\n".join(f"    {s / 2**20:6.1f} MiB  {n}" for s, n in sizes[:6])
        print(f"wheelhouse: error: {out} holds {total:.1f} MiB, over the {LIMIT_MIB} MiB limit; the largest:\n"
              f"{largest}\n  Leave out what the image already has: --have image-packages.txt (gpu_check.sh "
              "writes it on the GPU machine).", file=sys.stderr)
        return 2
    print(f"wheelhouse: {len(sizes)} wheels, {total:.1f} MiB in {out}; on the GPU machine: "
          f"bash benchmarks/gpu_check.sh --wheelhouse {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
