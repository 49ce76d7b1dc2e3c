import sys

from gemrepro.cli import main

sys.exit(main())
