"""`orpo-dist recipes`: the recipes bundled with orpo-dist, and a copy of one to edit.

Every command that takes a recipe (train --config, launch, submit, plan --recipe) also takes a
bundled recipe's name.
"""

from __future__ import annotations

import argparse

from .recipe_files import bundled_names, copy, describe

EPILOG = """examples:
  orpo-dist recipes                             # list them, with the hardware each is for
  orpo-dist recipes copy llama3-8b-qlora        # -> ./llama3-8b-qlora.yaml, to edit
  orpo-dist recipes copy tiny configs/my.yaml   # to a file (or a folder)
  orpo-dist train --config tiny                 # any command takes a bundled name as it is
"""


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orpo-dist recipes", description=__doc__, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("list", help="list the bundled recipes (the default)")
    cp = commands.add_parser("copy", help="write a bundled recipe to a file to edit")
    cp.add_argument("name", help="a bundled recipe's name (see `orpo-dist recipes`)")
    cp.add_argument("dest", nargs="?", help="file or folder to write (default: ./NAME.yaml)")
    cp.add_argument("--force", action="store_true", help="overwrite DEST if it exists")
    return p


def format_list() -> str:
    recipes = [describe(name) for name in bundled_names()]
    width = max(len(r.name) for r in recipes)
    lines = [f"{'recipe':<{width}}  hardware / what"]
    for r in recipes:
        lines += [f"{r.name:<{width}}  {r.hardware.rstrip('.')}", f"{'':<{width}}    {r.summary}"]
    lines += ["", "Run one by name (orpo-dist train --config NAME, orpo-dist launch ... NAME) or copy it to edit:",
              "orpo-dist recipes copy NAME [DEST]"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = make_parser().parse_args(argv)
    if args.command in (None, "list"):
        print(format_list())
        return 0
    target = copy(args.name, args.dest, args.force)
    print(f"wrote {target}: edit it, then run `orpo-dist train --config {target}`")
    return 0
