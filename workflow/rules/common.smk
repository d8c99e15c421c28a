# The job plan of this config (vlmprobe.plan): every path, job list, target, param, input and skip reason,
# computed once from the validated config. The stage files only wire it into rules.
from vlmprobe.plan import Plan

plan = Plan(config)


wildcard_constraints:
    dataset=plan.wildcard_constraints["dataset"],
    model=plan.wildcard_constraints["model"],
    setting=plan.wildcard_constraints["setting"],
    nuisance=plan.wildcard_constraints["nuisance"],
    probe=plan.wildcard_constraints["probe"],
