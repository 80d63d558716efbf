"""python -m engine.ops: list every operation and its parameters, and how to write a pipeline."""
import argparse
import difflib
import json

from ..settings import prog
from . import describe

PIPELINE_SYNTAX = """\
A pipeline is one or more steps separated by '|', each an operation name with optional
parameters after ':' as key=value pairs separated by ','. Steps run left to right; a
format step (jpeg, png, webp, json) goes last and chooses the output format (default: the
input's format if it is JPEG, PNG or WebP, else PNG); one before another step is refused.

  grayscale
  resize:width=640,height=480|sharpen:amount=1.5|webp:quality=80
  text:text=Hello%2C world        (',' '|' '%' and surrounding spaces in a value are %-escaped)

Parameters marked 'required' must be given; the others have the default shown."""


def _param_cells(p: dict) -> tuple[str, str, str, str, str]:
    """One parameter as table cells: name, type, default (or 'required'), range or choices, help."""
    need = "required" if p.get("required") else f"{p['default']}" if "default" in p else ""
    if "choices" in p:
        bounds = "|".join(str(c) for c in p["choices"])
    elif "min" in p or "max" in p:
        bounds = f"{p.get('min', '')}..{p.get('max', '')}"
    else:
        bounds = ""
    return p["name"], p["type"], need, bounds, p.get("help", "")


def _table(op: dict) -> list[str]:
    """An operation's header line and its parameters in columns as wide as their widest cell."""
    rows = [_param_cells(p) for p in op["params"]]
    lines = [f"{op['name']}  {op['help']}"]
    if rows:
        head = ("parameter", "type", "default", "range", "")
        widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
        for row in [head, *rows]:
            cells = [row[i].ljust(widths[i]) for i in range(4)]
            lines.append(("    " + "  ".join(cells) + "  " + row[4]).rstrip())
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog("engine.ops"), formatter_class=argparse.RawDescriptionHelpFormatter,
        description="List the image operations this engine offers, with their parameters.",
        epilog=PIPELINE_SYNTAX)
    parser.add_argument("names", nargs="*", metavar="OPERATION",
                        help="show only these operations (default: all of them, after the pipeline syntax)")
    parser.add_argument("--json", action="store_true", help="print the registry (or the operations named) as JSON")
    args = parser.parse_args(argv)
    ops = describe()
    unknown = [n for n in args.names if n not in ops]
    if unknown:
        hints = [f"{n!r}" + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(n, ops,
                                                                                                     1)) else "")
                 for n in unknown]
        parser.error(f"no operation {', '.join(hints)}; run {parser.prog} without arguments to list them all")
    if args.names:
        ops = {n: ops[n] for n in args.names}
    if args.json:
        print(json.dumps(ops, indent=2))
        return 0
    if not args.names:
        print(PIPELINE_SYNTAX + "\n")
    for op in ops.values():
        print("\n".join(_table(op)) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
