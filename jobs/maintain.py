"""spark-submit jobs/maintain.py --conf conf/<profile>.yaml [--set key=value] [--dry-run]: OPTIMIZE and
VACUUM every table, remove the token pools and exports nothing refers to."""
import sys

from climb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["maintain", *sys.argv[1:]]))
