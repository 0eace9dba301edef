"""Command line: `python -m motion_i2v_core {parity,convert} ...`."""

from __future__ import annotations

import argparse
import sys


def _parity(args) -> int:
    from motion_i2v_core.parity import run

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        results = run(args.bundle, level=args.level, only=args.only)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0 if results and all(r.passed for r in results) else 1


def _convert(args) -> int:
    from motion_i2v_core.loading.convert import convert_official_tree

    import torch

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    try:
        written = convert_official_tree(args.source, args.output, dtype=dtype, overwrite=args.overwrite)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for component, path in written.items():
        print(f"{component}: {path}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m motion_i2v_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("parity", help="compare our core with a reference bundle made by the official code")
    p.add_argument("bundle", help="bundle folder (format of tests/data/parity/)")
    p.add_argument("--level", choices=["module", "pipeline", "all"], default="all")
    p.add_argument("--only", help="only quantities whose name contains this text")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.set_defaults(func=_parity)

    c = sub.add_parser("convert", help="convert the official model folders to one .safetensors per component")
    c.add_argument("source", help="folder holding the official stage1/ and stage2/ trees (e.g. models/motion_i2v)")
    c.add_argument("output", help="folder to write the converted .safetensors files into")
    c.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default="fp16")
    c.add_argument("--overwrite", action="store_true", help="replace existing converted files")
    c.set_defaults(func=_convert)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
