"""``stateport list``: the built-in architectures and their sizes."""

from __future__ import annotations


def add_parser(sub):
    return sub.add_parser("list", help="list built-in architectures")


def run(args):
    from ..zoo import architectures

    rows = [{"name": a.name, "description": a.description, "sizes": {k: v for k, v in a.sizes.items()},
             "default_size": a.default_size} for a in architectures()]
    if not args.json:
        width = max(len(r["name"]) for r in rows)
        for r in rows:
            print(f"{r['name']:<{width}}  sizes: {', '.join(r['sizes'])}  — {r['description']}")
    return 0, {"architectures": rows}
