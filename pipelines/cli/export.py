"""``slth export``: an instance's MILP as an MPS or LP file."""
from __future__ import annotations

from .args import check_output_file

HELP = "write an instance's MILP as an MPS or LP file"
EXAMPLE = "slth export inst.npz --out inst.mps"


def add_arguments(p) -> None:
    p.add_argument("instance", help="instance file (.npz or .json)")
    p.add_argument("--out", required=True, help="FILE.mps or FILE.lp")


def run(args) -> int:
    import milp

    check_output_file(args.out, "--out", suffixes=(".mps", ".lp"))
    inst = milp.Instance.load(args.instance)
    milp.Encoding(inst).write(args.out)
    print(f"wrote {args.out}")
    return 0
