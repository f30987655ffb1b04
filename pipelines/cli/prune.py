"""``slth prune``: build and prune the random network of a registered construction."""
from __future__ import annotations

from .args import MAX_N, CliError, check_output_file, n_jobs, positive_float, positive_int, sample_size, seed

HELP = "build and prune the random CNN of a construction for a target network"
EXAMPLE = ("slth prune --construction iclr --target lenet5-mnist --n 20 --scale auto --out ticket.pt\n"
           "  slth prune --construction rfss --k 6 --target lenet5-mnist --n 24 --out whole.pt")


def add_arguments(p) -> None:
    import milp
    from models.random_tensors import DISTRIBUTIONS
    from pipelines.constructions import REGISTRY

    names = "; ".join(f"{k}: {cls.description}" for k, cls in REGISTRY.items())
    p.add_argument("--construction", default="iclr", choices=list(REGISTRY), help=f"construction ({names})")
    p.add_argument("--target", required=True,
                   help="lenet5-mnist, lenet5-fashion-mnist (the cached trained LeNet5, trained if missing), or a "
                        "LeNet5 state_dict file (torch.save(model.state_dict()), read with weights_only=True)")
    p.add_argument("--n", type=sample_size, required=True,
                   help=f"random samples per target entry (U channels per kernel), 1 to {MAX_N}")
    p.add_argument("--scale", default="none",
                   help="target scaling by positive homogeneity: none, auto (smallest lambda_i >= 1 putting every "
                        "scaled entry in its candidates' reach), or a positive number (the same lambda for every conv)")
    p.add_argument("--solver", default="auto",
                   help=f"solver backend for the subset-sum instances, one of: {', '.join(milp.available_solvers())}")
    p.add_argument("--time-limit", type=positive_float, default=None, metavar="SECONDS",
                   help="per-instance wall-clock limit in seconds; default none")
    p.add_argument("--dist", default=None, choices=list(DISTRIBUTIONS),
                   help="random weights: uniform = Unif[-1, 1], normal = N(0, 1); default: the construction's "
                        "own (iclr: uniform, the ICLR paper's; structured: normal, Theorem 3)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the random network (and of the solvers)")
    p.add_argument("--n-jobs", type=n_jobs, default=2, help="worker processes for the batch engine")
    p.add_argument("--domain", default=None, choices=["signed", "nonnegative", "auto"],
                   help="structured only: input domain of each block (signed: [-1, 1], both half-blocks, Theorem 3; "
                        "nonnegative: [0, 1], positive half-blocks only, Lemma 11; auto: per block, from the layer "
                        "before it); default auto")
    p.add_argument("--k", type=positive_int, default=None,
                   help="structured: fixed subset size per MRSS instance (Theorem 5's |S| = k); rfss: exactly k of the n "
                        "samples per dense weight (RFSS, uniform density k/n, 1 <= k <= n); default free (RSS)")
    p.add_argument("--conv", default=None, choices=["iclr", "structured"],
                   help="rfss only: construction of the conv part of the whole LeNet5 (the dense head is rfss's): "
                        "iclr (RSS per conv entry, random values of --dist) or structured (Theorem 3 of NeurIPS 2023 "
                        "with its own defaults: domain auto, blocks channel, free subset size, normal random "
                        "values; --n-conv channels per half-block); default iclr")
    p.add_argument("--n-conv", type=sample_size, default=None,
                   help="rfss only: random samples per conv entry of the conv part (default: --n)")
    p.add_argument("--blocks", default=None, choices=["channel", "pair"],
                   help="structured only: channel = one 2n-block per input channel (Theorem 3, MRSS dimension "
                        "c1*d*d); pair = one per (input, output) channel pair (beyond the paper, dimension d*d); "
                        "default channel")
    p.add_argument("--out", required=True, help="file for the pruned network (.pt, read back with weights_only=True)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def run(args) -> int:
    import milp
    from pipelines.constructions import parse_scale, prune

    out = check_output_file(args.out, "--out")  # before any work: a bad path must not cost the solves
    if args.solver not in milp.available_solvers():
        raise CliError(f"--solver: unknown or uninstalled solver {args.solver!r}; choose from "
                       f"{', '.join(milp.available_solvers())}")
    scale = parse_scale(args.scale)
    options = {}
    takes = {"domain": ("structured",), "k": ("structured", "rfss"), "blocks": ("structured",),
             "conv": ("rfss",), "n_conv": ("rfss",)}
    for name, value in (("domain", args.domain), ("k", args.k), ("blocks", args.blocks), ("conv", args.conv),
                        ("n_conv", args.n_conv)):
        if value is not None:
            if args.construction not in takes[name]:
                flag = "--" + name.replace("_", "-")
                raise CliError(f"{flag}: only the {' and '.join(takes[name])} construction{'s' if len(takes[name]) > 1 else ''} "
                               f"take{'' if len(takes[name]) > 1 else 's'} it (got --construction {args.construction})")
            options[name] = value
    if args.construction == "rfss" and args.k is not None and args.k > args.n:
        raise CliError(f"--k: the subset size must satisfy 1 <= k <= n = {args.n}, got {args.k}")
    g, info = prune(args.target, args.n, construction=args.construction, solver=args.solver, out=out, seed=args.seed,
                    dist=args.dist, scale=scale, n_jobs=args.n_jobs, time_limit=args.time_limit,
                    progress=not args.quiet, **options)
    lam = ", ".join(f"{x:.4g}" for x in info["lambdas"])
    print(f"pruned random network for {args.target} ({args.construction}), n = {args.n}, scale {args.scale} "
          f"(lambdas {lam}): {info['random']} random parameters ({info['random'] / info['target']:.1f}x the "
          f"target's {info['target']}), {info['kept']} kept; {info['instances']} subset-sum instances ({info['statuses']}), "
          f"max entry residual {info['residuals'].max():.3e} (scaled units); saved to {args.out}")
    if "densities" in info:
        print("density per block (conv: U's mask for iclr, V's for structured; dense: V's mask): " + ", ".join(
            f"{d['kind']} {d['block']}: {d['mask_density']:.4f}" for d in info["densities"]))
    if "domain_summary" in info:
        print(info["domain_summary"])
    return 0
