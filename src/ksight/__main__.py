import sys

from ksight.cli.main import main

sys.exit(main())
