import sys

from eebguard.cli import main

sys.exit(main())
