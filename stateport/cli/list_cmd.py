"""``stateport list``: the built-in architectures and their sizes; ``--table`` measures each one."""

from __future__ import annotations

from .args import positive_float

def add_parser(sub):
    p = sub.add_parser("list", help="list built-in architectures")
    p.add_argument("--table", action="store_true",
                   help="export each architecture and print a markdown table of state ports, state size, "
                        "parameters, latency, file size and parity (takes a while)")
    p.add_argument("--size", default="tiny", help="size to export for --table (tiny, default, ...)")
    p.add_argument("--seconds", type=positive_float, default=10.0, help="input length of each parity proof for --table")
    p.add_argument("--arch", action="append", dest="archs", metavar="NAME",
                   help="limit --table to this architecture (repeatable; default: all)")
    return p


def run(args):
    from ..zoo import architectures

    rows = [{"name": a.name, "description": a.description, "sizes": {k: v for k, v in a.sizes.items()},
             "default_size": a.default_size} for a in architectures()]
    doc = {"architectures": rows}
    if args.table:
        from ..export.table import architecture_table, markdown_table

        table = architecture_table(size=args.size, seconds=args.seconds, archs=args.archs)
        doc["table"] = table
        if not args.json:
            print(markdown_table(table))
        # Exit 1 when a row failed its export or parity proof, so scripts notice.
        failed = any("error" in r or not r.get("parity_passed", False) for r in table)
        return (1 if failed else 0), doc
    if not args.json:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            print(f"{r['name']:<{width}}  sizes: {', '.join(r['sizes'])}  — {r['description']}")
    return 0, doc
