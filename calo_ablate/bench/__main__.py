"""`python -m calo_ablate.bench`: see calo_ablate/bench/speed.py."""

import sys

from calo_ablate.bench.speed import main

sys.exit(main())
