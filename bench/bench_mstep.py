"""M-step: one node's objective, per-group (eq. 11/12) against Kronecker (eq. 13/14).

For a node at D = 63 whose paths fall into G lower-path groups, a synthetic but consistent
problem (whitened as the M-step does: mean Omega and mean S' near the identity): per group
Omega_g = R_g^T R_g with R_g = I + 0.2 N / sqrt(D), r_g ~ 0.1 N, and the augmented second
moment S'_g of n_g points v ~ N(mu_g, diag(0.5..1.5)). For growing G:
- seconds per objective evaluation (value + gradient) with ``method='groups'`` and
  ``'kronecker'`` (the latter after its one-off assembly, timed separately);
- seconds per node for a whole L-BFGS-B run from a perturbed identity (both methods follow
  the same iterates; assembly included for the Kronecker one), with the evaluation count;
- what ``mstep='auto'`` (the package's cost model ``choose_method``) would pick.
Rows compare 'groups' (value) with 'kronecker' (reference): ratio = kronecker time / groups
time, so ratio > 1 means the per-group form is faster. The crossover is the smallest G at which
the Kronecker form is faster. Single-threaded (BLAS 1 thread): the M-step runs the nodes of a
layer in parallel, one node per thread.
"""
import numpy as np
from scipy.optimize import minimize

from common import measure, row, threads

NAME = "mstep"


def node_problem(G, D, rng):
    R = np.eye(D)[None] + 0.2 * rng.standard_normal((G, D, D)) / np.sqrt(D)
    r = 0.1 * rng.standard_normal((G, D))
    n = rng.integers(50, 500, size=G).astype(float)
    mu = 0.3 * rng.standard_normal((G, D))
    var = 0.5 + rng.random((G, D))
    s1 = n[:, None] * mu
    s2 = n[:, None, None] * (np.einsum("gi,ij->gij", var, np.eye(D))
                             + mu[:, :, None] * mu[:, None, :])
    S = np.empty((G, D + 1, D + 1))
    S[:, :D, :D] = s2
    S[:, :D, D] = s1
    S[:, D, :D] = s1
    S[:, D, D] = n
    omegas = np.matmul(np.swapaxes(R, 1, 2), R)
    Rr = np.einsum("gji,gj->gi", R, r)
    L = Rr.T @ np.concatenate([s1, n[:, None]], axis=1)
    c0 = float(n @ np.einsum("gi,gi->g", r, r))
    # normalise to the M-step's whitened scale: mean S' and mean Omega ~ identity
    return omegas, S / n.sum() * G, L / n.sum() * G, c0 / n.sum() * G, float(G)


def lbfgs(obj, x0, maxiter):
    return minimize(obj, x0, jac=True, method="L-BFGS-B", options={"maxiter": maxiter})


def run(ctx):
    from dgmmcore._mstep import NodeObjective
    try:
        from dgmmcore._mstep import choose_method
    except ImportError:  # the cost model may move; the benchmark does not need it
        choose_method = None

    D = ctx.pick(8, 63, 63)
    Gs = ctx.pick([1, 4], [1, 5, 25, 100, 250], [1, 2, 5, 10, 25, 50, 100, 250, 500])
    maxiter = ctx.pick(20, 60, 200)
    lbfgs_G_max = ctx.pick(4, 250, 500)
    rng = np.random.default_rng(ctx.seed)
    rows = []
    x0 = np.concatenate([np.eye(D) + 0.05 * rng.standard_normal((D, D)) / np.sqrt(D),
                         np.zeros((D, 1))], axis=1).ravel()
    crossover_eval = crossover_node = None
    with threads(1):
        for G in Gs:
            om, S, L, c0, count = node_problem(G, D, rng)
            case = f"node G={G} D={D}"
            grp = NodeObjective(om, S, L, c0, count, method="groups")
            mb = measure(lambda: NodeObjective(om, S, L, c0, count, method="kronecker"),
                         max(1, min(ctx.repeats, 3)), ctx.warmup, 1)
            kron = mb["result"]
            v1, g1 = grp(x0)
            v2, g2 = kron(x0)
            agree = float(abs(v1 - v2) / max(1.0, abs(v1)) + np.max(np.abs(g1 - g2)) /
                          max(1e-300, np.max(np.abs(g1))))
            reps = max(3, ctx.repeats)
            mg = measure(lambda: grp(x0), reps, ctx.warmup, 1)
            mk = measure(lambda: kron(x0), reps, ctx.warmup, 1)
            auto = choose_method(G, D, maxiter) if choose_method else None
            rows.append(row(NAME, case, "s/eval groups", mg["median"], "s", ref="kronecker",
                            ref_value=mk["median"], ratio=mk["median"] / mg["median"], timing=mg,
                            groups=G, D=D,
                            kron_assembly_seconds=mb["median"], agree=agree, auto_choice=auto))
            rows.append(row(NAME, case, "kron assembly", mb["median"], "s", groups=G, D=D,
                            timing=mb))
            if crossover_eval is None and mk["median"] < mg["median"]:
                crossover_eval = G
            if G <= lbfgs_G_max:
                mlg = measure(lambda: lbfgs(grp, x0, maxiter), 1, 0, 1)
                mlk = measure(lambda: lbfgs(NodeObjective(om, S, L, c0, count, "kronecker"),
                                            x0, maxiter), 1, 0, 1)
                rg, rk = mlg["result"], mlk["result"]
                rows.append(row(NAME, case, "s/node L-BFGS-B groups", mlg["median"], "s",
                                ref="kronecker (incl. assembly)", ref_value=mlk["median"],
                                ratio=mlk["median"] / mlg["median"], timing=mlg, groups=G, D=D,
                                nfev_groups=int(rg.nfev), nfev_kron=int(rk.nfev),
                                nit_groups=int(rg.nit), nit_kron=int(rk.nit),
                                f_groups=float(rg.fun), f_kron=float(rk.fun), maxiter=maxiter,
                                auto_choice=auto))
                if crossover_node is None and mlk["median"] < mlg["median"]:
                    crossover_node = G
                ctx.log(f"{case}: eval groups {mg['median'] * 1e3:.2f} ms, kron "
                        f"{mk['median'] * 1e3:.2f} ms (+{mb['median']:.3f}s assembly); L-BFGS-B "
                        f"{rg.nfev} evals: groups {mlg['median']:.2f}s, kron {mlk['median']:.2f}s; "
                        f"auto -> {auto}")
    rows.append(row(NAME, "crossover", "G where kronecker eval wins", crossover_eval, "groups",
                    note="None: per-group faster at every G measured"))
    rows.append(row(NAME, "crossover", "G where kronecker node wins", crossover_node, "groups",
                    note="whole L-BFGS-B incl. assembly; None: never within the G measured"))
    return rows
