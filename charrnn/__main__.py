"""`python -m charrnn train | sample | gradcheck | corpus`: the command line (each takes --help)."""
import sys

from charrnn.cli import main

sys.exit(main())
