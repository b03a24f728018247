"""`make bench`: speed and memory of the base model on this machine, and the study runner's own cost."""
