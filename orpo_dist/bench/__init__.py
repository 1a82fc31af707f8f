"""`orpo-dist bench`, in a house of its own: cli.py starts the two arms (stock and fast step) as
training runs through the launcher's command builder and paces them; arm.py is what runs inside
each arm's processes (a training run, held step by step); mfu.py turns their token counts into
model FLOPs and a fraction of the machine's peak."""
