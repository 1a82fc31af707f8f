"""The launching layer: commands and environments that start training processes.

`strategies` (names and config files), `command` (the `accelerate launch` line), `cli`
(`orpo-dist launch`), `auto` (the planner's fit check) and `slurm/` (`orpo-dist submit`, one
submitit task per node). It hands a recipe path to `-m orpo_dist.train` and never reaches into
ORPO: no module here imports the trainer, callbacks, model or data code (tests/test_layout.py).
"""
