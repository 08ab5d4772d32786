"""Training: GRPO through TRL's GRPOTrainer, launched with accelerate (+ DeepSpeed), vLLM placement on GPUs.

- `api.train(recipe, overrides, ...)`: what `openrs train` does (plan, run dir, launch, cost sampler).
- `launch`: the pure launcher (`place`, `plan_launch`); `run`: the injectable runner (`run_plan`).
- `config`: recipe -> exact `GRPOConfig` keyword arguments, checked against the installed TRL.
- `data`, `callbacks`, `worker`: what runs inside each accelerate rank.
- `rundir`: run directory layout, launch.json, complete-checkpoint discovery for --resume.
Nothing heavy is imported here.
"""
