import sys

from mind_core.cli.main import main

sys.exit(main())
