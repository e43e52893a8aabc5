import sys

from climb_spark.cli import main

sys.exit(main())
