import sys

from tfgpt2.cli.main import main

sys.exit(main())
