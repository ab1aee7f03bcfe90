import sys

from gitkube.cli import main

sys.exit(main())
