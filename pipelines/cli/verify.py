"""``slth verify``: empirical / adversarial / certified sup-norm error of a pruned network."""
from __future__ import annotations

import json

from .args import CliError, bounded_int, check_input_folder, check_output_file, n_jobs, positive_float, positive_int, seed

HELP = "empirical / adversarial / exact / certified sup-norm error of a pruned network against its target"
EXAMPLE = "slth verify ticket.pt --images 2000 --attack-time 30 --exact --exact-time-limit 60"


def add_arguments(p) -> None:
    p.add_argument("pruned", help="file written by slth prune")
    p.add_argument("--target", default=None, help="target network (default: the target named in the pruned file)")
    p.add_argument("--dataset", default=None, choices=["mnist", "fashion-mnist", "none"],
                   help="images for the empirical error and the adversarial starts (default: the target's data set, "
                        "mnist for a state_dict file; none = adversarial and certified only)")
    p.add_argument("--data-dir", default=None, help="directory of standard IDX files instead of the installed data")
    p.add_argument("--images", type=positive_int, default=2000, help="test images for the empirical error")
    p.add_argument("--restarts", type=bounded_int(1, 10_000), default=8, help="random starts of the PGD attack")
    p.add_argument("--steps", type=bounded_int(1, 100_000), default=60, help="PGD steps per start")
    p.add_argument("--seed", type=seed, default=0, help="seed of the attack's random starts")
    p.add_argument("--attack-time", type=positive_float, default=30.0, metavar="SECONDS",
                   help="wall-clock seconds for the attack at most")
    p.add_argument("--attack-rounds", type=bounded_int(1, 1_000_000), default=3,
                   help="attack rounds at most (each from fresh random starts)")
    p.add_argument("--exact", action="store_true",
                   help="also the exact sup over the input box by MILP (one per output channel, border class and "
                        "sign; where one does not close, its dual bound is reported)")
    p.add_argument("--solver", default="highs", choices=["highs", "scip", "cbc"], help="MILP solver of --exact")
    p.add_argument("--confirm-with", default="scip", choices=["highs", "scip", "cbc", "none"],
                   help="second solver run on every MILP of --exact; the larger dual bound is kept (none: no second run)")
    p.add_argument("--exact-time-limit", type=positive_float, default=60.0, metavar="SECONDS",
                   help="seconds per MILP of --exact")
    p.add_argument("--exact-total", type=positive_float, default=600.0, metavar="SECONDS",
                   help="seconds for all MILPs of --exact (the rest keep their interval bound)")
    p.add_argument("--n-jobs", type=n_jobs, default=1,
                   help="worker processes for the MILPs of --exact (-1: all cores)")
    p.add_argument("--store", default=None, metavar="FILE",
                   help="SQLite store of the --exact solver results: a rerun solves only what it lacks; default none")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (list, tuple)) else (v, v)


def _describe_spec(s: dict) -> str:
    if s["type"] == "conv":
        b = s["block"]
        return (f"Conv2d({b['c0']}, {b['c1']}, kernel={tuple(b['kernel'])}, stride={tuple(b['stride'])}, "
                f"padding={tuple(b['padding'])}, bias={b['bias']})")
    if s["type"] == "maxpool":
        return (f"MaxPool2d(kernel={_pair(s['kernel_size'])}, stride={_pair(s['stride'])}, "
                f"padding={_pair(s['padding'])})")
    return "ReLU()"


def _describe_module(m) -> str:
    from torch import nn

    if isinstance(m, nn.Conv2d):
        return (f"Conv2d({m.in_channels}, {m.out_channels}, kernel={tuple(m.kernel_size)}, stride={tuple(m.stride)}, "
                f"padding={tuple(m.padding) if not isinstance(m.padding, str) else m.padding}, "
                f"bias={m.bias is not None})")
    if isinstance(m, nn.MaxPool2d):
        return f"MaxPool2d(kernel={_pair(m.kernel_size)}, stride={_pair(m.stride)}, padding={_pair(m.padding)})"
    return f"{type(m).__name__}()"


def architecture_mismatch(spec: list[dict], features) -> str | None:
    """The first difference between a pruned file's layers and a target ``nn.Sequential``, or None."""
    layers = list(features)
    for i, (s, m) in enumerate(zip(spec, layers)):
        if _describe_spec(s) != _describe_module(m):
            return f"layer {i} is {_describe_spec(s)} in the file but {_describe_module(m)} in the target"
    if len(spec) != len(layers):
        return f"the file has {len(spec)} layers, the target {len(layers)}"
    return None


def run(args) -> int:
    from models.random_cnn import ConstructionError, PrunedRandomCNN
    from pipelines.constructions import REGISTRY, get_construction, load_pruned, target_network
    from pipelines.data import load_dataset
    from pipelines.targets import NAMED_TARGETS, load_target
    from pipelines.verify import verify

    if args.data_dir is not None:
        check_input_folder(args.data_dir, "--data-dir")
    if args.store is not None:
        if not args.exact:
            raise CliError("--store: only the MILPs of --exact are stored; add --exact or drop --store")
        check_output_file(args.store, "--store", create_parents=True)
    pruned = load_pruned(args.pruned)
    if pruned.construction not in REGISTRY:
        raise CliError(f"{args.pruned}: construction: {pruned.construction!r} is not a registered construction "
                       f"(available: {', '.join(REGISTRY)}); this slth cannot verify it")
    target = args.target or pruned.extra.get("target")
    if not target:
        raise CliError(f"{args.pruned}: extra.target: the pruned file does not name its target; pass --target")
    if not isinstance(target, str):
        raise CliError(f"{args.pruned}: extra.target: expected a target name or file, got {target!r:.80}; "
                       f"pass --target")
    which = f"--target {target}" if args.target else f"its recorded target {target} (extra.target)"
    iclr_file = isinstance(pruned, PrunedRandomCNN)  # other constructions check their architecture in attach()
    if iclr_file and target in NAMED_TARGETS:  # named targets are LeNet5s: refuse another architecture before training
        from models.lenet5 import LeNet5

        mismatch = architecture_mismatch(pruned.layers_spec, LeNet5(seed=None).features)
        if mismatch:
            raise CliError(f"{args.pruned}: pruned for another architecture than {which}: {mismatch}")
    model, features = load_target(target, progress=not args.quiet)
    mismatch = architecture_mismatch(pruned.layers_spec, features) if iclr_file else None
    if mismatch:
        raise CliError(f"{args.pruned}: pruned for another architecture than {which}: {mismatch}")
    features = target_network(model, features, pruned.construction)  # the whole LeNet5 for rfss files
    try:
        c = get_construction(pruned.construction).attach(features.double().eval(), pruned)
    except ConstructionError as exc:
        raise CliError(f"{args.pruned}: {str(exc).splitlines()[0]}") from None
    data = None
    dataset = args.dataset or NAMED_TARGETS.get(target, "mnist")  # the target's own data set by default
    if dataset != "none":
        X, _ = load_dataset(dataset, "test", root=args.data_dir)
        data = X[:args.images].double()
    from milp import general

    if args.exact and args.solver not in general.available():
        raise CliError(f"--solver: {args.solver} is not installed here (available: {', '.join(general.available())})")
    domain = c.input_domain() if hasattr(c, "input_domain") else (0.0, 1.0)
    progress = None
    if args.exact and not args.quiet:
        import sys

        def progress(done, total, rec):
            print(f"exact: MILP {done}/{total} channel {rec['channel']} sign {rec['sign']:+d}: {rec['status']} "
                  f"[{rec['lower']:.4g}, {rec['upper']:.4g}] in {rec['seconds']:.1f} s", file=sys.stderr, flush=True)
    res = verify(c.target, pruned, data, restarts=args.restarts, steps=args.steps, seed=args.seed,
                 input_shape=(1, 28, 28), evaluate_with=pruned.compact(), certificate=c.certify(),
                 effective=c.effective(), domain=domain, attack_time=args.attack_time, attack_rounds=args.attack_rounds,
                 exact=args.exact, solver=args.solver, exact_time_limit=args.exact_time_limit,
                 exact_total_time=args.exact_total, progress=progress,
                 confirm_with=None if args.confirm_with == "none" else args.confirm_with, exact_n_jobs=args.n_jobs,
                 exact_store=args.store)
    s = res["summary"]
    if args.json:
        print(json.dumps(s))
        return 0
    box = f"[{domain[0]:g},{domain[1]:g}]^(28x28x1)"
    if data is None:
        print("empirical   not computed (--dataset none)")
    else:
        print(f"empirical   max ||f(X) - g(X)||_max over {len(data)} {dataset} test images: {s['empirical_abs']:.3e} "
              f"(relative, per image as in Figure 4: {s['empirical_rel']:.3e})")
    a = res["adversarial"]
    print(f"adversarial (attack: random vertices, sign steps + Adam per output entry and sign, greedy vertex and "
          f"coordinate search, {a['rounds']} rounds in {a['seconds']:.0f} s; attained): {s['adversarial_abs']:.3e}")
    if args.exact:
        ex = res["exact"]
        state = "closed" if s["exact_closed"] else "not closed: the upper value is the MILPs' dual bound"
        print(f"exact       sup over {box} by MILP ({ex['milps']} MILPs of {len(ex['records'])} channel/border/sign "
              f"classes, {args.solver}, {ex['seconds']:.0f} s): [{s['exact_lower']:.3e}, {s['exact_upper']:.3e}] "
              f"({state})")
    lam = ", ".join(f"{x:.4g}" for x in c.lambdas)
    print(f"certified   (upper bound for every X in {box}, scaling lambdas {lam}): {s['certified_abs']:.3e} "
          f"(interval bounds layer by layer {s['certified_interval']:.3e}; Appendix A-B {s['certified_appendix_b']:.3e})")
    order = "empirical <= adversarial <= exact <= certified" if args.exact else "empirical <= adversarial <= certified"
    print(f"ordered {order}: {s['ordered']}")
    return 0
