import sys

from vteller.cli import main

sys.exit(main())
