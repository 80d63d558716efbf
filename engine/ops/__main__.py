"""python -m engine.ops: list every operation and its parameters, and how to write a pipeline."""
import argparse
import json

from . import describe
from ..settings import prog

PIPELINE_SYNTAX = """\
A pipeline is one or more steps separated by '|', each an operation name with optional
parameters after ':' as key=value pairs separated by ','. Steps run left to right; a
format step (jpeg, png, webp) last chooses the output format (default: the input's
format if it is JPEG, PNG or WebP, else PNG).

  grayscale
  resize:width=640,height=480|sharpen:amount=1.5|webp:quality=80
  text:text=Hello%2C world        (',' '|' '%' and surrounding spaces in a value are %-escaped)

Parameters marked 'required' must be given; the others have the default shown."""


def _param_line(p: dict) -> str:
    need = "required" if p.get("required") else f"default={p['default']}" if "default" in p else ""
    extra = "".join(f" {k}={p[k]}" for k in ("min", "max", "choices") if k in p)
    return f"    {p['name']:<12} {p['type']:<6} {need}{extra}  {p['help']}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog("engine.ops"), formatter_class=argparse.RawDescriptionHelpFormatter,
        description="List the image operations this engine offers, with their parameters.",
        epilog=PIPELINE_SYNTAX)
    parser.add_argument("--json", action="store_true", help="print the registry as JSON")
    args = parser.parse_args(argv)
    ops = describe()
    if args.json:
        print(json.dumps(ops, indent=2))
        return 0
    print(PIPELINE_SYNTAX + "\n")
    for op in ops.values():
        print(f"{op['name']:<12} {op['help']}")
        for p in op["params"]:
            print(_param_line(p))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
