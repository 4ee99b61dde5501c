import sys

from .tracklets import main

sys.exit(main())
