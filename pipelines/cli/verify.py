"""``slth verify``: empirical / adversarial / certified sup-norm error of a pruned network."""
from __future__ import annotations

import json

from .args import positive_int, seed

HELP = "empirical / adversarial / certified sup-norm error of a pruned network against its target"
EXAMPLE = "slth verify ticket.pt --images 2000 --restarts 8 --steps 60"


def add_arguments(p) -> None:
    p.add_argument("pruned", help="file written by slth prune")
    p.add_argument("--target", default=None, help="target network (default: the target named in the pruned file)")
    p.add_argument("--dataset", default=None, choices=["mnist", "fashion-mnist", "none"],
                   help="images for the empirical error and the adversarial starts (default: the target's data set, "
                        "mnist for a state_dict file; none = adversarial and certified only)")
    p.add_argument("--data-dir", default=None, help="directory of standard IDX files instead of the installed data")
    p.add_argument("--images", type=positive_int, default=2000, help="test images for the empirical error")
    p.add_argument("--restarts", type=positive_int, default=8, help="random starts of the PGD attack")
    p.add_argument("--steps", type=positive_int, default=60, help="PGD steps per start")
    p.add_argument("--seed", type=seed, default=0, help="seed of the attack's random starts")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def run(args) -> int:
    from models.random_cnn import ConstructionError, PrunedRandomCNN
    from pipelines.constructions import get_construction
    from pipelines.data import load_dataset
    from pipelines.targets import NAMED_TARGETS, load_target
    from pipelines.verify import verify

    pruned = PrunedRandomCNN.load(args.pruned)
    target = args.target or pruned.extra.get("target")
    if not target:
        raise ConstructionError("--target: the pruned file does not name its target; pass --target")
    model, features = load_target(target, progress=not args.quiet)
    c = get_construction(pruned.construction).attach(features.double().eval(), pruned)
    data = None
    dataset = args.dataset or NAMED_TARGETS.get(target, "mnist")  # the target's own data set by default
    if dataset != "none":
        X, _ = load_dataset(dataset, "test", root=args.data_dir)
        data = X[:args.images].double()
    res = verify(c.target, pruned, data, restarts=args.restarts, steps=args.steps, seed=args.seed,
                 input_shape=(1, 28, 28), evaluate_with=pruned.compact(), certificate=c.certify())
    s = res["summary"]
    if args.json:
        print(json.dumps(s))
        return 0
    if data is None:
        print("empirical   not computed (--dataset none)")
    else:
        print(f"empirical   max ||f(X) - g(X)||_max over {len(data)} {dataset} test images: {s['empirical_abs']:.3e} "
              f"(relative, per image as in Figure 4: {s['empirical_rel']:.3e})")
    print(f"adversarial (PGD, {args.restarts} random restarts + worst data points, {args.steps} steps; lower bound "
          f"on the sup): {s['adversarial_abs']:.3e}")
    lam = ", ".join(f"{x:.4g}" for x in c.lambdas)
    print(f"certified   (upper bound for every X in [0,1]^(28x28x1), Appendix A-B, scaling lambdas {lam}): "
          f"{s['certified_abs']:.3e}")
    print(f"ordered empirical <= adversarial <= certified: {s['ordered']}")
    return 0
