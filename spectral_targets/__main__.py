import sys

from spectral_targets._cli import main

sys.exit(main())
