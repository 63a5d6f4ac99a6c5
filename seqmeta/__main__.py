import sys

from seqmeta.cli import main

sys.exit(main())
