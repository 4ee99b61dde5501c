import sys

from .summary import main

sys.exit(main())
