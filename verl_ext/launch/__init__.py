"""What ``scripts/run_grpo.sh`` checks and decides before it starts verl (``python -m verl_ext.launch.preflight``)."""
