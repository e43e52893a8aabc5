"""spark-submit jobs/pipeline.py --conf conf/<profile>.yaml [--set key=value]: every stage in order."""
import sys

from climb_spark.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
