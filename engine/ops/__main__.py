"""python -m engine.ops: list every operation and its parameters."""
import argparse
import json

from . import describe


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.ops",
                                     description="List the image operations this engine offers.")
    parser.add_argument("--json", action="store_true", help="print the registry as JSON")
    args = parser.parse_args(argv)
    ops = describe()
    if args.json:
        print(json.dumps(ops, indent=2))
        return 0
    for op in ops.values():
        print(f"{op['name']:<12} {op['help']}")
        for p in op["params"]:
            rng = "".join(f" {k}={p[k]}" for k in ("default", "min", "max", "choices") if k in p)
            print(f"    {p['name']:<12} {p['type']:<6}{rng}  {p['help']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
